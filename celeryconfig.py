"""Celery configuration, all from the dispatcher settings (environment)."""

from __future__ import annotations

from kombu import Exchange, Queue

from dispatcher.errors import ConfigurationError
from dispatcher.settings import get_settings

_settings = get_settings()
if _settings.redis_url is None:
    raise ConfigurationError(
        "REDIS_URL is not set: separately started workers need the shared broker. "
        "(`dispatcher run` without REDIS_URL starts its own embedded worker.)"
    )

broker_url = _settings.redis_url
broker_connection_retry_on_startup = True
# With acks_late on Redis, an unacknowledged task comes back after this many seconds;
# it must outlast the longest task (a batch waiting for capacity, then its request).
# kombu looks for such abandoned tasks every interval x throttle seconds (by default
# 100 s, whatever the timeout); here it looks every quarter of the timeout, at most
# every 10 s: one small sorted-set read.
# Priorities on the Redis broker (one list per step; 0 is served first): a HIGH-priority
# campaign's chunks overtake NORMAL and LOW ones waiting for the same workers
# (``dispatcher.sending.fanout.queue_priority``).
broker_transport_options = {
    "visibility_timeout": _settings.broker_visibility_timeout,
    "unacked_restore_interval": min(10, max(1, _settings.broker_visibility_timeout // 4)),
    "unacked_restore_throttle": 1,
    "priority_steps": [0, 3, 6, 9],
    "queue_order_strategy": "priority",
}

task_ignore_result = True
task_serializer = "json"
accept_content = ["json"]
task_acks_late = True  # a task lost with its worker is redelivered...
task_reject_on_worker_lost = True  # ...including when the worker was killed
# A stop (SIGTERM, Ctrl+C) is Celery's warm shutdown: a running send task ends after its
# slice in flight and queues the rest of its chunk at once (workers.tasks: stopping);
# tasks received but not started go back when the connection closes. Only a worker
# killed outright leaves tasks for the visibility timeout.
worker_prefetch_multiplier = 1  # no batch waits in a busy worker's buffer

# One direct exchange per queue, bound by its own name: without explicit routing keys
# every queue would bind the default key and receive every task.
task_queues = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in ("prepare", "send", "dlr")
)
task_default_queue = "send"
task_routes = {
    "workers.tasks.prepare_campaign": {"queue": "prepare", "routing_key": "prepare"},
    "workers.tasks.send_batch": {"queue": "send", "routing_key": "send"},
    "workers.tasks.send_batches": {"queue": "send", "routing_key": "send"},
    "workers.tasks.sweep_reports": {"queue": "dlr", "routing_key": "dlr"},
    "workers.tasks.resend_due": {"queue": "prepare", "routing_key": "prepare"},
    "workers.tasks.scan_drop_folder": {"queue": "prepare", "routing_key": "prepare"},
    "workers.tasks.start_due": {"queue": "prepare", "routing_key": "prepare"},
    "workers.tasks.purge_stored_files": {"queue": "prepare", "routing_key": "prepare"},
    # Guardrails (``dispatcher.guardrails.watch``): a few short reads every 2 s.
    "workers.tasks.guard": {"queue": "dlr", "routing_key": "dlr"},
    # Campaign progress for Flower (``workers.progress``): short reads, beside the sweep.
    "workers.progress.track_campaigns": {"queue": "dlr", "routing_key": "dlr"},
    "workers.progress.campaign_progress": {"queue": "dlr", "routing_key": "dlr"},
    # Alerts beside the sweep: no send waits behind them (sends have their own queue),
    # nor do they wait behind a long preparation; a run is bounded (``deliver_due``).
    "workers.tasks.deliver_alerts": {"queue": "dlr", "routing_key": "dlr"},
}
imports = ("workers.progress",)

# Periodic tasks expire when they could not start before their next turn: a backlog
# behind a long preparation runs each once, not once per missed turn.
_PERIODIC = {  # name: (task, every so many seconds)
    "sweep-reports": ("workers.tasks.sweep_reports", 5.0),
    "resend-due": ("workers.tasks.resend_due", 10.0),
    "drop-folder": ("workers.tasks.scan_drop_folder", 5.0),
    "start-due": ("workers.tasks.start_due", 5.0),
    "purge-stored-files": ("workers.tasks.purge_stored_files", 3600.0),
    "campaign-progress": ("workers.progress.track_campaigns", 3.0),
    "guardrails": ("workers.tasks.guard", 2.0),
    "deliver-alerts": ("workers.tasks.deliver_alerts", 5.0),
}
beat_schedule = {
    name: {"task": task, "schedule": every, "options": {"expires": every}}
    for name, (task, every) in _PERIODIC.items()
}
worker_hijack_root_logger = False
