"""Pre-flight checks of the sender through the provider, before anyone is messaged.

What the provider says about the sending number (LINK: the phone number information
API) decides whether the campaign may start (BLOCKED stops it), how fast it may send
(the level) and how many people it may reach in 24 hours (the messaging tier), with
the portfolio's other recent campaigns counted against that tier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Campaign, Message
from dispatcher.errors import CampaignSpecError, LinkRequestError, LinkTransientError
from dispatcher.providers import Level, Provider

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


@dataclass(slots=True)
class SenderCheck:
    """What the provider says about the sender (``Provider.sender_info``)."""

    level: Level
    notes: list[str] = field(default_factory=list)
    tier_cap: int | None = None  # unique people per 24 h, when limited


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
    try:
        info = client.sender_info(spec.sender.source)
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
    if info.limited is not None:
        details = info.limited or "no details given"
        result.notes.append(f"{name} reports the number LIMITED: {details}")
    tier = info.tier
    if tier in TIERS:
        result.tier_cap = TIERS[tier]
    elif tier:
        result.notes.append(f"unknown messaging tier {tier!r}: not enforced")
    return result


def tier_room(session: Session, spec: CampaignSpec, cap: int | None) -> int | None:
    """People this campaign may still reach in the next 24 h, or None (no cap).

    The tier counts unique people across the portfolio's campaigns: those this sender
    messaged in the last 24 h use part of it.
    """
    if cap is None or spec.sender.tier_limit == "ignore":
        return None
    since = datetime.now(UTC) - TIER_PERIOD
    recent = session.scalar(
        select(func.count(func.distinct(Message.identity_key)))
        .join(Campaign, Campaign.id == Message.campaign_id)
        .where(Campaign.source == spec.sender.source, Message.submitted_at >= since)
    )
    return max(0, cap - (recent or 0))
