"""The Celery app: ``celery -A workers worker -Q prepare,send,dlr``."""

from celery import Celery

app = Celery("dispatcher")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)

__all__ = ["app"]
