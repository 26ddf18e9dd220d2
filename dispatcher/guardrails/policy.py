"""What protects a sender, as a campaign spec (or a setting, for every campaign) says it:
a canary first, thresholds that pause a campaign on bad signals, and a frequency cap
across campaigns.

Shares are written ``"2%"`` (or ``2``), durations ``"90s"``, ``"10m"``, ``"2h"``,
``"7d"`` (or seconds). The defaults are what a careful operator would set by hand; each
is explained where it is defined.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(f"{value!r} is not a duration: write e.g. '90s', '10m', '2h', '7d'")
        return timedelta(seconds=float(found[1]) * _UNITS[(found[2] or "s").lower()])
    raise ValueError("a duration is a number of seconds or text such as '10m'")


def _percent(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a share: write e.g. '2%'") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a share is a percentage such as '2%'")
    if not 0 <= value <= 100:
        raise ValueError("a share is between 0% and 100%")
    return float(value)


def _seconds_text(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


#: A duration: '10m', '7d', or seconds.
Duration = Annotated[
    timedelta, BeforeValidator(_duration), PlainSerializer(_seconds_text, return_type=str)
]
#: A share in percent: '2%' or 2.
Percent = Annotated[
    float, BeforeValidator(_percent), PlainSerializer(lambda v: f"{v:g}%", return_type=str)
]


def describe_duration(value: timedelta) -> str:
    """'10m', '7d', '90s': as a spec writes it."""
    return _seconds_text(value)


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Canary(_Policy):
    """Send a share first and hold the rest until its outcomes are judged."""

    share: Percent = Field(default=2.0, description="the share of the people sent first")
    min_people: int = Field(default=50, ge=1, description="at least this many in the canary")
    wait: Duration = Field(
        default=timedelta(minutes=10),
        description="the longest the rest waits for the canary's outcomes, counted from "
        "when the canary's messages have all left; then it goes if nothing crossed a "
        "threshold",
    )


class Guardrails(_Policy):
    """Thresholds that pause a sending campaign (and judge a canary).

    A failure class is judged over the outcomes reported in the last ``window`` once
    there are ``min_outcomes`` of them; its share of them pausing the campaign.
    """

    enabled: bool = Field(default=True, description="false: no automatic pause")
    window: Duration = Field(default=timedelta(minutes=10), description="the rolling window")
    min_outcomes: int = Field(
        default=50, ge=1, description="outcomes in the window before any share is judged"
    )
    # Meta 131048: "Spam rate limit hit". A few in a hundred already mean people report
    # the messages as spam; the next step is a quality drop, then a block.
    spam_rate_limit: Percent = Field(default=5.0, description="131048's share")
    # Meta 131049: Meta chose not to deliver (marketing fatigue). Common for marketing
    # audiences: only a large share says the audience is saturated.
    ecosystem: Percent = Field(default=30.0, description="131049's share")
    # Meta 131026: undeliverable (no WhatsApp, old app, terms not accepted).
    undeliverable: Percent = Field(default=20.0, description="131026's share")
    # Meta 132000/132012/100: a wrong parameter fails every message alike.
    parameter_errors: Percent = Field(default=2.0, description="132000, 132012, 100's share")
    # Numbers WhatsApp refuses as destinations (not a WhatsApp user, invalid).
    invalid_contacts: Percent = Field(default=20.0, description="invalid contacts' share")
    template_status: bool = Field(
        default=True, description="pause when the template is reported PAUSED or DISABLED"
    )
    sender_health: bool = Field(
        default=True, description="pause when the sender turns BLOCKED or LIMITED"
    )
    quality_floor: Literal["GREEN", "YELLOW", "RED"] = Field(
        default="YELLOW",
        description="pause when the sender's quality rating drops below this (YELLOW: at RED)",
    )
    poll_interval: Duration = Field(
        default=timedelta(seconds=60),
        description="how often a sending campaign's sender information is polled "
        "(LINK rate-limits its phone number information API)",
    )


class FrequencyCap(_Policy):
    """At most ``messages`` marketing messages to a person per ``period`` from one
    business portfolio, across every campaign."""

    messages: int = Field(ge=1, description="marketing messages a person may receive")
    period: Duration = Field(description="the rolling period, e.g. '7d'")


def overlay(base: Guardrails, override: dict[str, Any] | None) -> Guardrails:
    """The settings' thresholds with what a spec changes of them."""
    if not override:
        return base
    return Guardrails.model_validate({**base.model_dump(), **override})
