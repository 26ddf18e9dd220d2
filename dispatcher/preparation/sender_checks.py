"""Pre-flight checks of the sender through the provider, before anyone is messaged.

What the provider says about the sending number (LINK: the phone number information
API) decides whether the campaign may start (BLOCKED stops it; so does a quality rating
below the spec's ``sender.min_quality``), what an operator is warned of (LIMITED, a RED
rating), how fast it may send (the level) and how many people it may reach in 24 hours
(the messaging tier), with the portfolio's other recent template campaigns counted
against that tier.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Campaign, Message
from dispatcher.errors import (
    CampaignSpecError,
    ConfigurationError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.providers import Level, Provider, TemplateInfo, serving

log = logging.getLogger(__name__)

#: Seed 004 'Phone number information API': unique people a portfolio may start
#: business-initiated conversations with in a rolling 24 hours.
TIERS: dict[str, int | None] = {
    "TIER_250": 250,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
TIER_PERIOD = timedelta(hours=24)
#: Seed 004 'Phone number information API' <QUALITY_RATING>, best first; NA ("not yet
#: determined, typically applicable to new phone numbers") is ranked nowhere.
QUALITY_ORDER = ("GREEN", "YELLOW", "RED")


@dataclass(slots=True)
class SenderCheck:
    """What the provider says about the sender (``Provider.sender_info``)."""

    level: Level
    notes: list[str] = field(default_factory=list)
    tier_cap: int | None = None  # unique people per 24 h, when limited
    rate_cap: int | None = None  # messages a second, when the provider caps below the level

    def rate(self, ceiling_percent: int) -> int:
        """Messages a second this campaign may send: the level's (or the provider's cap,
        when lower), times the spec's share of it."""
        most = self.level.messages_per_second
        if self.rate_cap is not None:
            most = min(most, self.rate_cap)
        return max(1, most * ceiling_percent // 100)


def check_sender(client: Provider, spec: CampaignSpec) -> SenderCheck:
    """Level, warnings and tier from the provider's sender information (LINK: the
    phone number information API).

    BLOCKED refuses the campaign with the provider's reasons; LIMITED goes on with its
    details as notes. The spec's level wins unless the provider reports a lower one.
    Unavailable information is not fatal (LINK rate-limits its API): the spec's level,
    else STANDARD; bad credentials (LinkAuthError) do stop the campaign, since no send
    would work.
    """
    wanted = spec.sender.level if spec.sender.level is not Level.UNKNOWN else None
    client = serving(client, spec.sender)
    try:
        info = client.sender_info(spec.sender.address)
    except (LinkTransientError, LinkRequestError) as exc:
        level = wanted or Level.STANDARD
        log.warning("phone number information unavailable (%s); assuming %s", exc, level)
        return SenderCheck(level, [f"phone number information unavailable ({exc}): "
                                 f"assumed level {level.value}, tier not checked"])  # fmt: skip
    name = client.name
    if info.blocked is not None:
        reasons = info.blocked or "no reason given"
        raise CampaignSpecError("sender", [("sender.source", f"{name} reports BLOCKED: {reasons}")])
    result = SenderCheck(wanted or Level.STANDARD)
    reported = info.level if info.level is not Level.UNKNOWN else None
    if reported is not None and (
        wanted is None or reported.messages_per_second < wanted.messages_per_second
    ):
        if wanted is not None:
            result.notes.append(f"the spec says {wanted.value} but {name} reports "
                                    f"{reported.value}: sending at {reported.value}")  # fmt: skip
        result.level = reported
    if info.messages_per_second is not None and (
        info.messages_per_second < result.level.messages_per_second
    ):
        result.rate_cap = info.messages_per_second
        result.notes.append(f"{name} caps the number at {info.messages_per_second} messages "
                            "a second")  # fmt: skip
    if info.limited is not None:
        details = info.limited or "no details given"
        result.notes.append(f"{name} reports the number LIMITED: {details}")
    _check_quality(name, info.quality, spec.sender.min_quality, result)
    tier = info.tier
    if tier in TIERS:
        result.tier_cap = TIERS[tier]
    elif tier:
        result.notes.append(f"unknown messaging tier {tier!r}: not enforced")
    return result


def _check_quality(
    name: str, quality: str | None, minimum: str | None, result: SenderCheck
) -> None:
    """Seed 004 <QUALITY_RATING>: RED ("significant delivery or engagement issues ... can
    trigger a 'Flagged' status and limit future messaging") is a warning; the spec's
    ``sender.min_quality`` refuses a rating below it. NA (not yet determined) is not
    refused: a new number has no rating to judge."""
    if quality == "RED":
        result.notes.append(
            f"{name} reports the number's quality rating RED: significant delivery or "
            "engagement issues; its messaging may be limited"
        )
    if minimum is None or quality not in QUALITY_ORDER:
        if minimum is not None:
            result.notes.append(f"quality rating {quality or 'not reported'}: "
                                f"sender.min_quality {minimum} not checked")  # fmt: skip
        return
    if QUALITY_ORDER.index(quality) > QUALITY_ORDER.index(minimum):
        problem = f"{name} reports quality rating {quality}, below sender.min_quality {minimum}"
        raise CampaignSpecError("sender", [("sender.min_quality", problem)])


def tier_room(
    session: Session, spec: CampaignSpec, cap: int | None, portfolio: Collection[str] = ()
) -> int | None:
    """People this campaign may still reach in the next 24 h, or None (no cap).

    Seed 004 <PHONENUMBER_MESSAGING_TIER>: "unique business-initiated conversations your
    portfolio can start within a rolling 24-hour period". So the people that any sender
    of the portfolio (``portfolio``: the sender numbers sharing it, ``Settings.
    portfolio_of``) reached with a template in the last 24 h use part of it; messages
    other than templates answer a person inside their care window and do not count,
    nor are they held by it.
    """
    if cap is None or spec.sender.tier_limit == "ignore" or not spec.is_template:
        return None
    since = datetime.now(UTC) - TIER_PERIOD
    senders = sorted({spec.sender.source, *portfolio})
    recent_campaigns = session.execute(
        select(Campaign.id, Campaign.spec).where(
            Campaign.source.in_(senders),
            or_(Campaign.finished_at.is_(None), Campaign.finished_at >= since),
        )
    ).all()
    templates = [c for c, raw in recent_campaigns if _is_template(raw)]
    if not templates:
        return cap
    recent = session.scalar(
        select(func.count(func.distinct(Message.identity_key))).where(
            Message.campaign_id.in_(templates), Message.submitted_at >= since
        )
    )
    return max(0, cap - (recent or 0))


def _is_template(raw_spec: dict[str, Any] | None) -> bool:
    message = (raw_spec or {}).get("message")
    return isinstance(message, dict) and message.get("type") == "template"


def check_template(client: Provider, spec: CampaignSpec, notes: list[str]) -> TemplateInfo | None:
    """The sender's template this campaign sends, checked against the provider's list
    before anyone is messaged; None for other messages, or when the list is unavailable
    (a note says so; bad credentials stop the campaign, as for ``check_sender``).

    Refused, with what the provider lists: a name not there in this language, a template
    not approved (paused, disabled, rejected, pending), or header, body or button
    parameter counts other than the template's. Meta would fail each message of it
    (132001, 132015/132016, 132000): found here, once, instead of across the audience.
    """
    if not spec.is_template:
        return None
    template = spec.message.get("template") or {}
    name = str(template.get("name", ""))
    language = template.get("language")
    code = str(language.get("code", "") if isinstance(language, dict) else language or "")
    client = serving(client, spec.sender)
    try:
        listed = client.templates(spec.sender.address)
    except (LinkTransientError, LinkRequestError, ConfigurationError) as exc:
        # ConfigurationError: the provider needs a setting to list them (Meta's
        # META_WABA_ID); sending does not, so the campaign goes on unchecked.
        notes.append(f"template list unavailable ({exc}): template {name!r} not checked")
        return None
    where = "message.template"
    same_name = [t for t in listed if t.name == name]
    found = next((t for t in same_name if t.language == code), None)
    if found is None:
        if same_name:
            languages = ", ".join(sorted(t.language for t in same_name))
            problem = f"template {name!r} has no {code!r} translation (it has: {languages})"
        else:
            problem = f"{client.name} lists no template {name!r} for {spec.sender.source}"
        raise CampaignSpecError("template", [(f"{where}.name", problem)])
    if not found.approved:
        problem = f"template {name!r} ({code}) is {found.status}, not APPROVED: it cannot be sent"
        raise CampaignSpecError("template", [(f"{where}.name", problem)])
    header, body, buttons, carousel = _parameter_counts(spec.message)
    problems = []
    if body != found.body_parameters:
        problems.append(("body", body, str(found.body_parameters)))
    if not found.carousel and not carousel:
        if header != found.header_parameters:
            problems.append(("header", header, str(found.header_parameters)))
        low, high = found.button_parameters_required, found.button_parameters_allowed
        if not low <= buttons <= high:
            problems.append(("button", buttons, str(low) if low == high else f"{low} to {high}"))
    if problems:
        raise CampaignSpecError("template", [
            (f"{where}.components", f"{kind} parameters: the message gives {given}, template "
                                    f"{name!r} ({code}) takes {wanted} (Meta error 132000)")
            for kind, given, wanted in problems
        ])  # fmt: skip
    if found.authentication and not spec.authentication:
        notes.append(f"template {name!r} is an AUTHENTICATION template: sent to phone "
                     "numbers only (BSUIDs cannot receive it, Meta error 131062)")  # fmt: skip
    return found


def _parameter_counts(message: dict[str, Any]) -> tuple[int, int, int, bool]:
    """Header, body and button parameters the message gives, and whether it is a carousel."""
    template = message.get("template") or {}
    components = template.get("components") or message.get("components") or []
    counts = {"header": 0, "body": 0, "button": 0}
    carousel = False
    for component in components:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).lower()
        if kind in counts:
            counts[kind] += len(component.get("parameters") or [])
        carousel = carousel or kind == "carousel"
    return counts["header"], counts["body"], counts["button"], carousel
