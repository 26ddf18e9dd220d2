"""The strangers' limit is a count over any second, not over the clock's seconds."""

from __future__ import annotations

import pytest
from limits.storage import memory

from dispatcher.interfaces.edge import CallerLimits

SCOPE = {"client": ("198.51.100.7", 4321), "headers": []}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_a_burst_that_straddles_two_clock_seconds_is_held_to_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(1_000.9)
    monkeypatch.setattr(memory, "time", clock)
    limits = CallerLimits(per_second=20)
    assert all(limits.allow(SCOPE) for _ in range(10))
    clock.now = 1_001.05  # the next clock second, 150 ms on
    assert all(limits.allow(SCOPE) for _ in range(10))
    clock.now = 1_001.2
    assert not limits.allow(SCOPE)  # 20 in the last 300 ms
    clock.now = 1_001.91  # the first ten are over a second old
    assert [limits.allow(SCOPE) for _ in range(11)] == [True] * 10 + [False]
