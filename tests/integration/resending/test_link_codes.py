"""LINK's own failure codes and Meta's 131062, over real HTTP to the simulator.

Seed 004 lists only WhatsApp codes as "subject for resends"; 112000 (Unknown error) and
112408 (System error) say "Contact support". 131062 (a BSUID is not allowed for this
message, seed 000) is sent once more to the person's phone number when one is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatcher.db import Database
from dispatcher.sending.batch import Outcome
from tests.integration.resending.test_planner import (
    Stack,
    settled,
    start,
    statuses,
    wait_for,
)


@pytest.fixture()
def stack_for(db: Database, redis_url: str) -> Iterator[Callable[..., Stack]]:
    """Simulator and webhook app on loopback (``test_planner.Stack``), closed after."""
    stacks: list[Stack] = []

    def make(scripted: dict[str, list[int]], **sim: object) -> Stack:
        stacks.append(Stack(db, redis_url, scripted, **sim))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.close()


def test_contact_support_codes_are_final_not_resent(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    unknown, system = "+4741234531", "+4741234532"
    stack = stack_for({}, scripted_results={unknown: [112000], system: [112408]})
    assert set(stack.send(start(stack, tmp_path, [unknown, system]))) == {Outcome.SUBMITTED}
    wait_for(settled(db, {unknown: "failed", system: "failed"}))
    assert stack.resend_due() == []
    assert statuses(db) == {unknown: ("failed", 1, "final"), system: ("failed", 1, "final")}
    assert stack.received() == {unknown: 1, system: 1}
