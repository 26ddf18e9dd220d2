"""Workers killed with SIGKILL mid-campaign: the whole worker, and a busy pool child."""

from __future__ import annotations

import time

import pytest

from tests.conftest import BOTH
from tests.faults.conftest import PEOPLE, FaultStack, assert_nothing_lost

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.faults]


@BOTH
def test_workers_and_pool_children_killed_mid_campaign(fault_stack: FaultStack) -> None:
    fault_stack.start()
    campaign_id = fault_stack.launch()
    for round_, share in enumerate((0.15, 0.35, 0.55, 0.75)):
        fault_stack.wait_accepted(int(PEOPLE * share))
        if round_ % 2 == 0:
            fault_stack.kill_worker(0)
            time.sleep(1)
            fault_stack.start_worker(0)
        else:
            assert fault_stack.kill_pool_children(1) == 2, "worker 1 had no pool children"
    fault_stack.wait_finished(campaign_id)
    assert_nothing_lost(fault_stack.verdict(campaign_id), "kill -9 worker x2, pool children x2")
