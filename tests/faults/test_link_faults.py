"""The provider misbehaving (LINK, and Meta's Cloud API): 500s, answers that never come
in time, connections dropped after the messages were taken; and the same send tasks
delivered again."""

from __future__ import annotations

from collections import defaultdict

import pytest
from celery import Celery
from sqlalchemy import create_engine, select

from dispatcher.db import Batch
from tests.conftest import BOTH
from tests.faults.conftest import PEOPLE, FaultStack, assert_nothing_lost

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.faults]


@BOTH
def test_server_errors_timeouts_and_dropped_connections(fault_stack: FaultStack) -> None:
    fault_stack.start(
        {
            "SIMULATOR_ERROR_RATE": "0.10",  # 500, nothing taken
            "SIMULATOR_HANG_RATE": "0.05",  # taken, answered after the client gave up
            "SIMULATOR_HANG_MS": "2500",
            "SIMULATOR_DROP_RATE": "0.02",  # taken, connection closed with no answer
        }
    )
    campaign_id = fault_stack.launch()
    fault_stack.wait_finished(campaign_id)
    verdict = fault_stack.verdict(campaign_id)
    assert verdict.faults.get("hang", 0) > 0 and verdict.faults.get("drop", 0) > 0
    # LINK's 500 says 112500, the simulator's Graph 500 131000.
    assert any(verdict.faults.get(f"http {code}", 0) > 0 for code in (112500, 131000))
    assert_nothing_lost(verdict, "provider 10 % 500, 5 % timeout, 2 % dropped after accept")


@BOTH
def test_send_tasks_delivered_again(fault_stack: FaultStack) -> None:
    """Every batch's task published a second time, mid-campaign and after the end, under
    the id of the task that claimed it (a redelivery as Redis makes it) or a new one."""
    fault_stack.start()
    campaign_id = fault_stack.launch()
    broker = Celery(broker=fault_stack.redis.url)
    engine = create_engine(fault_stack.database_url)

    def deliver_again() -> int:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Batch.id, Batch.claimed_by).where(Batch.campaign_id == campaign_id)
            ).all()
        by_task: dict[str | None, list[str]] = defaultdict(list)
        for batch_id, claimer in rows:
            by_task[claimer].append(batch_id)
        for claimer, batch_ids in by_task.items():
            for start in range(0, len(batch_ids), 100):
                chunk = batch_ids[start : start + 100]
                broker.send_task(
                    "workers.tasks.send_batches",
                    kwargs={"batch_ids": chunk, "campaign_id": campaign_id},
                    task_id=claimer if start == 0 else None,  # None: not claimed yet
                    queue="send",
                    routing_key="send",
                )
        broker.send_task(
            "workers.tasks.prepare_campaign",
            kwargs={"campaign_id": campaign_id},
            queue="prepare",
            routing_key="prepare",
        )
        return len(rows)

    try:
        fault_stack.wait_accepted(PEOPLE // 2)
        assert deliver_again() > 0
        fault_stack.wait_finished(campaign_id)
        assert deliver_again() == PEOPLE
        fault_stack.wait_idle()
        fault_stack.wait_finished(campaign_id)
    finally:
        engine.dispose()
        broker.close()
    assert_nothing_lost(fault_stack.verdict(campaign_id), "every task delivered twice")
