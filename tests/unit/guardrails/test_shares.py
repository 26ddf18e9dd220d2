"""The arithmetic of the guardrails: failure classes, shares over thresholds, the
canary's size, when it is judged and what it says, and the writer's waiting batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.guardrails import canary, signals
from dispatcher.guardrails.policy import Canary, Guardrails
from dispatcher.preparation.batching import Batch, Writer

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("whatsapp", "result", "expected"),
    [
        (131048, 112403, "spam_rate_limit"),
        (131049, 112403, "ecosystem"),
        (131026, 112403, "undeliverable"),
        (132000, 112403, "parameter_errors"),
        (132012, None, "parameter_errors"),
        (100, 112403, "parameter_errors"),
        (None, 112404, "invalid_contacts"),
        (131030, None, "invalid_contacts"),
        (131000, 112403, None),
        (None, 112000, None),
    ],
)
def test_a_failure_is_classed_by_its_whatsapp_code_then_links_invalid_contact(
    whatsapp: int | None, result: int | None, expected: str | None
) -> None:
    assert signals.classify(whatsapp, result) == expected


def test_a_share_over_its_threshold_crosses_and_one_at_it_does_not() -> None:
    rails = Guardrails()  # spam 5%, undeliverable 20%
    assert signals.crossings({"spam_rate_limit": 5}, 100, rails) == []  # 5% is not over 5%
    crossed = signals.crossings({"spam_rate_limit": 6, "undeliverable": 30}, 100, rails)
    # Worst first: 30% of a 20% threshold is 1.5 times it, 6% of 5% 1.2 times.
    assert [(c.name, c.failed, c.share) for c in crossed] == [
        ("undeliverable", 30, 30.0),
        ("spam_rate_limit", 6, 6.0),
    ]
    assert signals.crossings({"spam_rate_limit": 3}, 0, rails) == []


def test_a_spec_threshold_overrides_the_default() -> None:
    rails = Guardrails.model_validate({"spam_rate_limit": "10%"})
    assert signals.crossings({"spam_rate_limit": 8}, 100, rails) == []
    assert signals.crossings({"spam_rate_limit": 11}, 100, rails)[0].threshold == 10.0


def test_the_outcomes_are_counted_only_when_some_class_could_cross() -> None:
    rails = Guardrails()  # 50 outcomes at least: 5% of them is 2.5
    assert not signals.may_cross({"spam_rate_limit": 2}, rails)
    assert signals.may_cross({"spam_rate_limit": 3}, rails)
    assert not signals.may_cross({"undeliverable": 10}, rails)  # 20% of 50 is 10: not over
    assert signals.may_cross({"undeliverable": 11}, rails)


@pytest.mark.parametrize(
    ("value", "text"),
    [(50.0, "50%"), (13.33, "13%"), (7.2, "7.2%"), (5.0, "5%"), (0.35, "0.35%"), (100.0, "100%")],
)
def test_percentages_read_as_people_write_them(value: float, text: str) -> None:
    assert signals.percent(value) == text


@pytest.mark.parametrize(
    ("people", "share", "min_people", "size"),
    [
        (3000, 2.0, 50, 60),
        (1000, 2.0, 50, 50),
        (30, 2.0, 50, 30),
        (101, 10.0, 1, 11),
        (0, 2.0, 50, 0),
    ],
)
def test_the_canary_is_its_share_rounded_up_at_least_min_people_at_most_everyone(
    people: int, share: float, min_people: int, size: int
) -> None:
    assert canary.size(Canary(share=share, min_people=min_people), people) == size


@pytest.mark.parametrize(
    ("min_outcomes", "people", "needed"), [(50, 60, 25), (50, 10, 5), (50, 7, 4), (1, 60, 1)]
)
def test_a_canary_share_is_judged_from_half_of_the_smaller_of_min_outcomes_and_its_people(
    min_outcomes: int, people: int, needed: int
) -> None:
    assert signals.needed_outcomes(min_outcomes, people) == needed


def _plan(until: datetime = NOW + timedelta(minutes=5)) -> dict[str, object]:
    stored = canary.plan(Canary(), people=60, held=2940, first_seq=1, last_seq=2,
                         started=until - timedelta(minutes=10))  # fmt: skip
    return stored


def test_a_canary_waits_for_enough_outcomes_then_pauses_with_its_figures() -> None:
    rails = Guardrails()
    early = canary.Tally(people=60, seen=20, unseen=40, failed={"spam_rate_limit": 20})
    assert canary.decide(early, _plan(), rails, NOW).verdict is None  # 20 < 25 seen
    found = canary.Tally(
        people=60, seen=30, unseen=30, failed={"spam_rate_limit": 15},
        by_code={"spam_rate_limit": {131048: 15}},
    )  # fmt: skip
    decision = canary.decide(found, _plan(), rails, NOW)
    assert decision.verdict == canary.PAUSED and decision.signal is not None
    assert (
        decision.signal.figure == "50% of 30 canary messages failed with 131048 (spam rate limit)"
    )
    assert decision.signal.threshold == "5% of the canary's outcomes"
    assert decision.signal.detail.startswith("2,940 people held until `dispatcher resume`")
    assert "30 of 60 canary messages had no outcome yet" in decision.signal.detail


def test_a_healthy_canary_is_released_once_all_are_in_or_the_wait_ends() -> None:
    rails = Guardrails()
    partial = canary.Tally(people=60, seen=50, unseen=10, failed={"spam_rate_limit": 1})
    assert canary.decide(partial, _plan(), rails, NOW).verdict is None
    ended = canary.decide(partial, _plan(until=NOW - timedelta(seconds=1)), rails, NOW)
    assert ended.verdict == canary.RELEASED_AFTER_WAIT and "10 unseen" in ended.figure
    whole = canary.Tally(people=60, seen=60, unseen=0, failed={"spam_rate_limit": 1})
    assert canary.decide(whole, _plan(), rails, NOW).verdict == canary.RELEASED


def test_with_guardrails_off_a_canary_never_pauses() -> None:
    bad = canary.Tally(people=60, seen=60, unseen=0, failed={"spam_rate_limit": 60})
    decision = canary.decide(bad, _plan(), Guardrails(enabled=False), NOW)
    assert decision.verdict == canary.RELEASED


def test_the_writer_puts_the_canary_first_and_every_later_batch_waiting() -> None:
    cut: list[Batch] = []
    writer = Writer(7, 4, 1, cut.extend, level=80, canary=6)
    for n in range(20):
        writer.add("same", {"m": 1}, (f"k{n}", f"+47{n}", [f"+47{n}"], n + 2, "{}"))
    writer.close()
    assert [len(b.members) for b in cut if not b.waiting] == [4, 2]
    assert [b.members[0][0] for b in cut if not b.waiting] == ["k0", "k4"]
    assert writer.canary_people == 6 and writer.canary_last_seq == 2
    assert all(b.seq > 2 for b in cut if b.waiting)
    assert sum(len(b.members) for b in cut if b.waiting) == 14
    assert writer.waiting == {b.id for b in cut if b.waiting}


def test_a_canary_larger_than_the_list_takes_everyone_and_nothing_waits() -> None:
    cut: list[Batch] = []
    writer = Writer(7, 4, 1, cut.extend, level=80, canary=50)
    for n in range(5):
        writer.add("same", {"m": 1}, (f"k{n}", f"+47{n}", [f"+47{n}"], n + 2, "{}"))
    writer.close()
    assert writer.canary_people == 5 and writer.waiting == set()


def test_a_resumed_preparation_after_its_canary_writes_everyone_left_waiting() -> None:
    cut: list[Batch] = []
    writer = Writer(7, 4, 9, cut.extend, level=80, canary=0)
    for n in range(5):
        writer.add("same", {"m": 1}, (f"k{n}", f"+47{n}", [f"+47{n}"], n + 2, "{}"))
    writer.close()
    assert cut and all(b.waiting for b in cut)
