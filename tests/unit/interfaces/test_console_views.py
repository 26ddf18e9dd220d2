"""What the console's pages draw from a campaign's figures: the bar's parts, the chart."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.interfaces.web.charts import chart
from dispatcher.interfaces.web.console import as_progress, offered, rate, stages
from dispatcher.operations.flower import Held
from dispatcher.operations.insight import Timeline, TimelinePoint
from dispatcher.operations.progress import Progress

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def progress(**figures: int | str) -> Progress:
    """A status document as ``actions`` answers it, these figures changed."""
    counted = ("loaded", "rejected", "duplicates", "messages", "submitted", "sent",
               "delivered", "read", "failed", "unsettled", "awaiting_resend", "expired",
               "in_doubt_batches")  # fmt: skip
    document: dict[str, Any] = {name: 0 for name in counted}
    document |= {"campaign_id": 1, "name": "Spring", "state": "sending", "error": None,
                 "level": "STANDARD", "rate_per_second": 80, "rejects_path": None,
                 "by_status": {}, "failures": {}}  # fmt: skip
    return as_progress(document | figures)


def test_the_bars_parts_are_disjoint_and_held_people_are_their_own_part() -> None:
    p = progress(messages=100, submitted=70, sent=60, delivered=50, read=30, failed=8,
                 awaiting_resend=3)  # fmt: skip
    shown = stages(p, Held(people=10, until=None))
    counts = {part.key: part.count for part in shown.parts}
    assert counts == {"read": 30, "delivered": 20, "sent": 12, "failed": 5, "resend": 3,
                      "held": 10}  # fmt: skip
    assert shown.waiting == 100 - sum(counts.values())
    assert shown.done == 67  # their messages left: read, delivered, sent, failed
    assert "67 of 100 people sent or failed" in shown.words


def test_the_bar_never_counts_more_people_than_the_campaign_has() -> None:
    shown = stages(progress(messages=10, submitted=12, sent=12, read=12, delivered=12))
    assert sum(part.count for part in shown.parts) == 10
    assert shown.waiting == 0


@pytest.mark.parametrize(
    ("state", "buttons"),
    [
        ("sending", ["pause", "cancel"]),
        ("paused", ["resume", "cancel"]),
        ("scheduled", ["cancel"]),
        ("previewed", ["start"]),
        ("completed", []),
        ("cancelled", []),
    ],
)
def test_a_campaign_offers_the_actions_its_state_allows(state: str, buttons: list[str]) -> None:
    assert [action.name for action in offered(state)] == buttons


def test_the_rate_is_shown_against_the_lowered_level_while_sending_only() -> None:
    sending = replace(progress(), send_rate=31.6, rate_factor=0.5)
    assert rate(sending) == "32 of 40/s"
    assert rate(replace(sending, state="completed")) == "-"


def point(second: int, rate: float, sent: int) -> TimelinePoint:
    return TimelinePoint(START + timedelta(seconds=second), 1.0, int(rate), rate, sent,
                         sent, sent, 0)  # fmt: skip


def test_the_chart_draws_one_line_a_series_through_every_interval() -> None:
    points = tuple(point(i, 10.0 * i, 5 * i) for i in range(5))
    drawn = str(chart(Timeline(1, START, START + timedelta(seconds=4), 1.0, points)))
    lines = re.findall(r'<polyline class="line-(\w+)" points="([^"]+)"', drawn)
    assert [name for name, _ in lines] == ["rate", "sent", "delivered", "read", "failed"]
    assert all(len(shown.split()) == 5 for _, shown in lines)
    assert "09:00:04 UTC" in drawn
    assert drawn.count("<tr><td>") == 5  # the same figures as a table


def test_no_chart_before_two_intervals() -> None:
    assert chart(Timeline(1, None, None, 0.0, ())) is None
    assert chart(Timeline(1, START, START, 1.0, (point(0, 1.0, 1),))) is None
