"""A worker moves its start-up heap out of the collector's reach when it is ready."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest
from celery.signals import worker_process_init, worker_ready
from celery.utils.dispatch import Signal

import workers.tasks  # noqa: F401  (connects the receivers)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    interval = sys.getswitchinterval()  # worker_process_init shortens it too
    gc.unfreeze()
    yield
    gc.unfreeze()
    sys.setswitchinterval(interval)


@pytest.mark.parametrize("signal", [worker_ready, worker_process_init], ids=["ready", "child"])
@pytest.mark.usefixtures("unfrozen")
def test_a_starting_worker_freezes_its_heap(signal: Signal) -> None:
    assert gc.get_freeze_count() == 0
    signal.send(sender=None)
    # Everything loaded so far (in this interpreter: pytest, Celery, SQLAlchemy...).
    assert gc.get_freeze_count() > 50_000
