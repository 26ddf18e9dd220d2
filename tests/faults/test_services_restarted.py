"""Redis and PostgreSQL restarted mid-campaign, and the webhook app down for a minute."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import BOTH
from tests.faults.conftest import (
    PEOPLE,
    TOKEN,
    FaultStack,
    PostgresServer,
    assert_nothing_lost,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.faults]


@BOTH
def test_redis_killed_and_restarted_mid_campaign(fault_stack: FaultStack) -> None:
    """Broker and limiter gone for 3 s (SIGKILL); the append-only file brings the queue
    back, as the README's Redis settings promise."""
    fault_stack.start()
    campaign_id = fault_stack.launch()
    fault_stack.wait_accepted(PEOPLE // 3)
    fault_stack.redis.restart(down_seconds=3)
    fault_stack.wait_finished(campaign_id)
    assert_nothing_lost(fault_stack.verdict(campaign_id), "Redis SIGKILL + restart (AOF)")


@BOTH
def test_postgres_stopped_and_restarted_mid_campaign(
    fault_stack: FaultStack, postgres_server: PostgresServer
) -> None:
    """An immediate stop (no checkpoint, every client cut off) for 5 s: the webhook app
    answers 503 meanwhile and the simulator calls back again later."""
    fault_stack.use_database(postgres_server.url)
    fault_stack.start()
    campaign_id = fault_stack.launch()
    fault_stack.wait_accepted(PEOPLE // 3)
    postgres_server.stop()
    webhook = f"http://127.0.0.1:{fault_stack.webhook_port}/webhooks/link/dlr?token={TOKEN}"
    answers = {httpx.post(webhook, content=b"{}", timeout=10).status_code for _ in range(3)}
    assert answers == {503}, answers
    time.sleep(5)
    postgres_server.start()
    fault_stack.wait_finished(campaign_id)
    assert_nothing_lost(fault_stack.verdict(campaign_id), "PostgreSQL immediate stop, 5 s")


@BOTH
def test_webhook_app_down_for_a_minute(fault_stack: FaultStack) -> None:
    fault_stack.start()
    campaign_id = fault_stack.launch()
    fault_stack.wait_accepted(PEOPLE // 5)
    fault_stack.stop_webhook()
    time.sleep(60)
    pending = fault_stack.stats()["callbacks"]
    assert isinstance(pending, dict) and pending["pending"] > 0, "no callback was due"
    fault_stack.start_webhook()
    fault_stack.wait_finished(campaign_id)
    assert_nothing_lost(fault_stack.verdict(campaign_id), "webhook app down 60 s")
