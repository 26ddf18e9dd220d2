"""The frequency cap's eligible date: when a person may receive one more marketing
message, from the times they received the last ones (``guardrails.caps``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.guardrails.caps import Over, describe, effective, eligible_at, marketing
from dispatcher.guardrails.policy import FrequencyCap
from dispatcher.settings import Settings

NOW = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
WEEKLY_TWO = FrequencyCap(messages=2, period=timedelta(days=7))


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def test_under_the_cap_is_eligible_now() -> None:
    assert eligible_at([], WEEKLY_TWO, NOW) is None
    assert eligible_at([ago(days=1)], WEEKLY_TWO, NOW) is None


def test_at_the_cap_eligible_when_the_oldest_leaves_the_period() -> None:
    found = eligible_at([ago(days=1), ago(days=4)], WEEKLY_TWO, NOW)
    assert found == Over(2, ago(days=4) + timedelta(days=7))  # 2026-12-09 14:00


def test_messages_older_than_the_period_do_not_count() -> None:
    assert eligible_at([ago(days=1), ago(days=7, seconds=1)], WEEKLY_TWO, NOW) is None
    # exactly a period ago still counts (the window includes its start)
    assert eligible_at([ago(days=1), ago(days=7)], WEEKLY_TWO, NOW) == Over(2, NOW)


def test_over_the_cap_waits_until_enough_have_left() -> None:
    """A cap lowered since: three in the period, two allowed -> one more once two have
    left, at the second oldest plus the period."""
    times = [ago(days=1), ago(days=2), ago(days=5)]
    assert eligible_at(times, WEEKLY_TWO, NOW) == Over(3, ago(days=2) + timedelta(days=7))
    one = FrequencyCap(messages=1, period=timedelta(days=7))
    assert eligible_at(times, one, NOW) == Over(3, ago(days=1) + timedelta(days=7))


def test_order_of_the_times_does_not_matter() -> None:
    times = [ago(hours=3), ago(days=6), ago(days=2)]
    assert eligible_at(times, WEEKLY_TWO, NOW) == eligible_at(sorted(times), WEEKLY_TWO, NOW)


def test_a_waiting_message_counted_now_makes_a_full_period() -> None:
    assert eligible_at([NOW, NOW], WEEKLY_TWO, NOW) == Over(2, NOW + timedelta(days=7))


def test_the_description_says_the_cap_the_count_and_the_date() -> None:
    said = describe(WEEKLY_TWO, Over(2, datetime(2026, 12, 9, 14, 0, 30, tzinfo=UTC)))
    assert said == (
        "not sent: 2 marketing messages in the last 7d from this portfolio already "
        "(frequency cap 2 per 7d); eligible from 2026-12-09 14:01 UTC"
    )  # rounded up: never earlier than it is
    exact = describe(WEEKLY_TWO, Over(2, datetime(2026, 12, 9, 14, 0, tzinfo=UTC)))
    assert exact.endswith("eligible from 2026-12-09 14:00 UTC")
    hourly = FrequencyCap(messages=1, period=timedelta(hours=12))
    assert "1 marketing message in the last 12h" in describe(hourly, Over(1, NOW))


def _spec(**extra: object) -> CampaignSpec:
    message = {"type": "template", "template": {"name": "promo", "language": "en"}}
    return CampaignSpec.model_validate(
        {"name": "n", "sender": {"source": "+4790000000"}, "message": message,
         "recipients": "people.csv", **extra}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("spec_cap", "setting", "expected"),
    [
        (None, None, None),
        (None, WEEKLY_TWO, WEEKLY_TWO),
        (
            {"messages": 1, "period": "1d"},
            WEEKLY_TWO,
            FrequencyCap(messages=1, period=timedelta(days=1)),
        ),
        ("off", WEEKLY_TWO, None),
    ],
)
def test_the_effective_cap(
    spec_cap: object, setting: FrequencyCap | None, expected: FrequencyCap | None
) -> None:
    spec = _spec(frequency_cap=spec_cap)
    assert effective(spec, Settings(frequency_cap=setting)) == expected


def test_marketing_unless_the_category_says_otherwise() -> None:
    assert marketing(_spec())  # not stated: counted as marketing
    assert marketing(_spec(template_category="marketing"))
    assert not marketing(_spec(template_category="utility"))
    assert not marketing(_spec(template_category="authentication"))
    text = CampaignSpec.model_validate(
        {"name": "n", "sender": {"source": "+4790000000"}, "recipients": "people.csv",
         "message": {"type": "text", "text": {"body": "hi"}}}
    )  # fmt: skip
    assert not marketing(text)
