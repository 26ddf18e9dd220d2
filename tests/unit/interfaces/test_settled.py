"""The documents of campaigns that ended are kept a while for lists polled every few
seconds; a state change, or time, makes them counted again."""

from __future__ import annotations

import time

from dispatcher.interfaces.actions import Settled


def test_an_ended_campaigns_document_is_kept_until_its_state_changes_or_it_ages() -> None:
    settled = Settled(seconds=0.2)
    document = {"campaign_id": 1, "state": "completed", "read": 170}
    settled.keep(1, "completed", document)
    assert settled.get(1, "completed") is document
    assert settled.get(1, "sending") is None  # reopened for a resend: counted again
    time.sleep(0.25)
    assert settled.get(1, "completed") is None


def test_a_campaign_still_going_is_never_kept() -> None:
    settled = Settled()
    for state in ("draft", "scheduled", "preparing", "sending", "paused"):
        settled.keep(2, state, {"state": state})
        assert settled.get(2, state) is None


def test_the_oldest_are_let_go_when_many_are_kept() -> None:
    settled = Settled()
    for campaign_id in range(1000):
        settled.keep(campaign_id, "completed", {"campaign_id": campaign_id})
    assert settled.get(999, "completed") == {"campaign_id": 999}
    assert settled.get(0, "completed") is None
