"""How ``guardrails.health`` judges a template status, the sender's health and its
quality rating for one campaign: its spec's guardrails over the settings', and what
pre-flight already told the operator."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.guardrails import health

NOTE_LIMITED = "LINK reports the number LIMITED: display name not approved"
NOTE_RED = "LINK reports the number's quality rating RED: significant delivery issues"


def watched(
    guardrails: dict[str, Any] | None = None, notes: tuple[str, ...] = ()
) -> health.Watched:
    raw: dict[str, Any] = {
        "name": "x",
        "sender": {"source": "+4790000000"},
        "message": {"type": "template", "template": {"name": "hello", "language": {"code": "en"}}},
        "recipients": "people.csv",
    }
    if guardrails is not None:
        raw["guardrails"] = guardrails
    spec = CampaignSpec.model_validate(raw)
    return health.Watched(1, spec, health.rails_of(raw), notes, None)


@pytest.mark.parametrize(
    ("floor", "rating", "paused"),
    [
        (None, "RED", True),  # the default floor, YELLOW: paused at RED
        (None, "YELLOW", False),
        ("GREEN", "YELLOW", True),
        ("RED", "RED", False),
        (None, "NA", False),  # not yet determined: judged by nobody
        (None, None, False),
    ],
)
def test_quality_pauses_below_the_floor_the_spec_or_settings_set(
    floor: str | None, rating: str | None, paused: bool
) -> None:
    campaign = watched({"quality_floor": floor} if floor else None)
    signal = health.quality_signal(campaign, rating, "a poll")
    assert (signal is not None) == paused
    if signal is not None:
        assert (signal.reason, signal.figure) == ("quality", rating)
        assert signal.threshold == f"{floor or 'YELLOW'} or better"


def test_a_red_rating_pre_flight_already_reported_is_no_news() -> None:
    assert health.quality_signal(watched(notes=(NOTE_RED,)), "RED", "a poll") is None


def test_limited_pauses_only_a_campaign_that_did_not_start_limited() -> None:
    fresh = health.sender_signal(watched(), None, "display name not approved", "a poll")
    assert fresh is not None and fresh.reason == "sender_limited"
    assert fresh.detail == "a poll: display name not approved"
    assert health.sender_signal(watched(notes=(NOTE_LIMITED,)), None, "", "a poll") is None


def test_blocked_pauses_even_a_campaign_that_started_limited() -> None:
    signal = health.sender_signal(watched(notes=(NOTE_LIMITED,)), "", None, "a poll")
    assert signal is not None and (signal.reason, signal.detail) == ("sender_blocked", "a poll")


@pytest.mark.parametrize(
    ("status", "reason"),
    [("PAUSED", "template_paused"), ("disabled", "template_disabled"), ("APPROVED", None)],
)
def test_a_template_status_names_its_reason(status: str, reason: str | None) -> None:
    signal = health.template_signal(watched(), status, "a poll")
    assert (signal.reason if signal else None) == reason


@pytest.mark.parametrize(
    "off", [{"template_status": False}, {"sender_health": False}, {"enabled": False}]
)
def test_each_signal_can_be_turned_off_by_the_spec(off: dict[str, bool]) -> None:
    campaign = watched(off)
    if "template_status" in off:
        assert health.template_signal(campaign, "PAUSED", "a poll") is None
    if "sender_health" in off:
        assert health.sender_signal(campaign, "", None, "a poll") is None
    assert campaign.rails.enabled == ("enabled" not in off)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("en_US", "en-US", True),
        ("en", None, True),
        ("en", "en_US", False),
        ("pt_BR", "PT-br", True),
    ],
)
def test_template_languages_compare_as_meta_writes_them(a: str, b: str | None, same: bool) -> None:
    assert health.same_language(a, b) == same
