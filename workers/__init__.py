"""The Celery app: ``celery -A workers worker -Q prepare,send,dlr``."""

import sys
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

app = Celery("dispatcher")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)

#: How long a thread may hold the GIL before another waiting one gets it (Python's
#: default is 5 ms). A send task's event loop writes paced requests at set moments
#: while other task threads of the process do database work; at 5 ms turns it
#: misses its moments and the requests must take fresh slots (measured with
#: bench/throughput.py: 89 % of HIGH personalised at 5 ms, 93 % at 1 ms).
SWITCH_INTERVAL_SECONDS = 0.001


@worker_init.connect
@worker_process_init.connect
def _short_gil_turns(**_: Any) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


__all__ = ["app"]
