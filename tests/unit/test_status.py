from __future__ import annotations

import itertools

import pytest

from dispatcher.status import MessageStatus as S
from dispatcher.status import advances, predecessors


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (S.QUEUED, S.SUBMITTED, True),
        (S.SUBMITTED, S.SENT, True),
        (S.SENT, S.DELIVERED, True),
        (S.DELIVERED, S.READ, True),
        (S.READ, S.DELETED, True),
        (S.DELIVERED, S.SENT, False),  # a late 'sent' never overwrites 'delivered'
        (S.READ, S.DELIVERED, False),
        (S.SUBMITTED, S.DELIVERED, True),  # a skipped stage is fine
        (S.SENT, S.FAILED, True),
        (S.DELIVERED, S.FAILED, False),
        (S.FAILED, S.DELIVERED, False),
        (S.FAILED, S.SENT, False),
        (S.SENT, S.UNKNOWN, True),
        (S.UNKNOWN, S.DELIVERED, True),
        (S.DELIVERED, S.UNKNOWN, False),
        (S.SENT, S.SENT, False),  # duplicates change nothing
    ],
)
def test_status_only_moves_forward(old: S, new: S, allowed: bool) -> None:
    assert advances(old, new) is allowed


def final_status(reports: tuple[S, ...]) -> S:
    status = S.SUBMITTED
    for report in reports:
        if advances(status, report):
            status = report
    return status


@pytest.mark.parametrize(
    "reports",
    [
        (S.SENT, S.DELIVERED, S.READ),
        (S.SENT, S.SENT, S.DELIVERED, S.READ, S.READ),
        (S.SENT, S.FAILED),
    ],
)
def test_any_order_or_duplication_of_reports_gives_the_same_final_status(
    reports: tuple[S, ...],
) -> None:
    expected = final_status(reports)
    finals = {final_status(order) for order in itertools.permutations(reports)}
    assert finals == {expected}


def test_predecessors_are_exactly_the_statuses_that_may_be_replaced() -> None:
    assert set(predecessors(S.DELIVERED)) == {S.PENDING, S.QUEUED, S.SUBMITTED, S.SENT, S.UNKNOWN}
    assert S.DELIVERED not in predecessors(S.FAILED)
