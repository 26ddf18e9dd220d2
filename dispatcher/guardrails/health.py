"""Signals from outside the campaign's own outcomes: its template reported paused or
disabled, its sender turning BLOCKED or LIMITED, the sender's quality rating dropping.

Three ways they arrive, judged by the same rules (``template_signal``, ``sender_signal``,
``quality_signal``):

* ``poll``: the provider asked about each sending campaign's sender (LINK: the phone
  number information API and List Templates, seed 004; Meta: the phone number's fields
  and the WABA's template list), at most once per ``poll_interval`` per sender across
  every worker. LINK rate-limits its phone number information API: an answer that does
  not come (rate-limited, down) is no signal, only a wait for the next poll;
* Meta's webhooks about the sender (``tracking.sender_events``);
* status reports and send answers carrying 132015 (template paused) or 132016 (template
  disabled), Meta's codes for a send of such a template (``tracking.sender_events``).

LIMITED pauses only a campaign that was not LIMITED when it started (pre-flight notes
say LIMITED when it was: the operator started it knowing). Likewise a RED rating the
pre-flight already reported is no news; a rating below ``quality_floor`` is otherwise
(a floor of YELLOW pauses at RED). NA / UNKNOWN (not yet determined) is judged by nobody.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Campaign, Database
from dispatcher.errors import ConfigurationError, LinkRequestError, LinkTransientError
from dispatcher.guardrails import pausing
from dispatcher.guardrails.policy import Guardrails, describe_duration, overlay
from dispatcher.masking import mask
from dispatcher.providers import Provider, SenderInfo, TemplateInfo, serving
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState

log = logging.getLogger(__name__)

#: Seed 004 <QUALITY_RATING>, best first (as ``preparation.sender_checks``).
QUALITY_ORDER = ("GREEN", "YELLOW", "RED")
#: A template's status -> the reason it pauses a campaign for.
TEMPLATE_REASONS = {"PAUSED": "template_paused", "DISABLED": "template_disabled"}
#: Meta's error codes for a send of a paused or disabled template (Meta's error code
#: reference; seed 004 is silent): the status they report.
TEMPLATE_CODES = {132015: "PAUSED", 132016: "DISABLED"}
#: Pre-flight's note of a LIMITED number (``sender_checks.check_sender``).
_LIMITED_NOTE = "reports the number LIMITED"
_RED_NOTE = "quality rating RED"
_GATE_KEY = "dispatcher:guardrails:poll:{provider}:{address}"


@dataclass(frozen=True, slots=True)
class Watched:
    """A sending campaign whose guardrails are on, as the signals need it."""

    id: int
    spec: CampaignSpec
    rails: Guardrails
    notes: tuple[str, ...]
    guard_since: datetime | None

    @property
    def template(self) -> tuple[str, str] | None:
        """The template it sends (name, language code), or None."""
        if not self.spec.is_template:
            return None
        template = self.spec.message.get("template") or {}
        language = template.get("language")
        code = language.get("code", "") if isinstance(language, dict) else language or ""
        return str(template.get("name", "")), str(code)

    @property
    def limited_at_start(self) -> bool:
        return any(_LIMITED_NOTE in note for note in self.notes)

    @property
    def red_at_start(self) -> bool:
        return any(_RED_NOTE in note for note in self.notes)


def rails_of(raw_spec: dict[str, Any] | None) -> Guardrails:
    """The campaign's effective guardrails: the settings' with what its spec changes."""
    return overlay(get_settings().guardrails, (raw_spec or {}).get("guardrails"))


def watched(session: Session, campaign_ids: list[int] | None = None) -> list[Watched]:
    """The sending campaigns (of ``campaign_ids``, when given) with guardrails on."""
    query = select(Campaign.id, Campaign.spec, Campaign.notes, Campaign.guard_since).where(
        Campaign.state == CampaignState.SENDING
    )
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(campaign_ids))
    found = []
    for campaign_id, raw, notes, since in session.execute(query.order_by(Campaign.id)):
        try:
            spec = CampaignSpec.model_validate(raw)
            rails = rails_of(raw)
        except ValueError as exc:  # a spec stored before a rule changed: not judged
            log.warning("campaign %s: spec unreadable for guardrails (%s)", campaign_id, exc)
            continue
        if rails.enabled:
            found.append(Watched(campaign_id, spec, rails, tuple(notes or ()), since))
    return found


def same_language(a: str | None, b: str | None) -> bool:
    """Template languages alike: ``en_US`` as templates name it, ``en-US`` as Meta's
    template webhook does; no language given matches every one."""
    if not a or not b:
        return True
    return a.replace("-", "_").lower() == b.replace("-", "_").lower()


def template_signal(
    campaign: Watched, status: str, how: str, *, name: str | None = None
) -> pausing.Signal | None:
    """The pause a template ``status`` (PAUSED, DISABLED) calls for, or None; ``how``
    says who reported it."""
    reason = TEMPLATE_REASONS.get(status.upper())
    template = campaign.template
    if reason is None or template is None or not campaign.rails.template_status:
        return None
    shown = f"template {name or template[0]!r} ({template[1]})"
    return pausing.Signal(reason, f"{shown} {status.upper()}", "APPROVED", how)


def sender_signal(
    campaign: Watched, blocked: str | None, limited: str | None, how: str
) -> pausing.Signal | None:
    """BLOCKED (``blocked`` is not None: its reasons), or LIMITED when the campaign did
    not start so; None when neither, or ``sender_health`` is off."""
    if not campaign.rails.sender_health:
        return None
    if blocked is not None:
        detail = f"{how}: {blocked}" if blocked else how
        return pausing.Signal("sender_blocked", "BLOCKED", "AVAILABLE or LIMITED", detail)
    if limited is not None and not campaign.limited_at_start:
        detail = f"{how}: {limited}" if limited else how
        return pausing.Signal(
            "sender_limited", "LIMITED", "AVAILABLE (as when the campaign started)", detail
        )
    return None


def quality_signal(campaign: Watched, quality: str | None, how: str) -> pausing.Signal | None:
    """A quality rating below the campaign's ``quality_floor``, or None (a rating not
    yet determined; RED that pre-flight already reported)."""
    rating = (quality or "").upper()
    floor = campaign.rails.quality_floor
    if rating not in QUALITY_ORDER or QUALITY_ORDER.index(rating) <= QUALITY_ORDER.index(floor):
        return None
    if rating == "RED" and campaign.red_at_start:
        return None
    return pausing.Signal("quality", rating, f"{floor} or better", how)


def pause_all(
    session: Session, signals: list[tuple[int, pausing.Signal]], now: datetime | None = None
) -> list[int]:
    """Pause each campaign for its signal (the first signal of a campaign wins); the
    campaigns paused now."""
    paused: list[int] = []
    for campaign_id, signal in signals:
        if campaign_id not in paused and pausing.pause(session, campaign_id, signal, now):
            paused.append(campaign_id)
    return paused


# -- the poll ---------------------------------------------------------------------------


def poll(db: Database, client: Provider, redis_client: redis.Redis | None, now: datetime) -> None:
    """Ask the provider about each sending campaign's sender (its information, and its
    templates when a campaign sends one), at most once per ``poll_interval`` per sender
    across every worker (without Redis: once per call), and pause the campaigns the
    answers call for."""
    with db.session() as session:
        campaigns = watched(session)
    by_sender: dict[tuple[str, str], list[Watched]] = defaultdict(list)
    for campaign in campaigns:
        sender = campaign.spec.sender
        by_sender[sender.provider, sender.address].append(campaign)
    for (provider, address), group in by_sender.items():
        interval = min(c.rails.poll_interval for c in group)
        if not _due(redis_client, provider, address, interval.total_seconds()):
            continue
        try:
            provider_client = serving(client, group[0].spec.sender)
        except ConfigurationError as exc:  # its provider is not configured here
            log.warning("sender %s not polled: %s", mask(address), exc)
            continue
        signals = _ask(provider_client, address, group)
        if signals:
            with db.session() as session:
                pause_all(session, signals, now)


def _due(redis_client: redis.Redis | None, provider: str, address: str, seconds: float) -> bool:
    """Whether this worker polls the sender now: the first to take the gate for
    ``seconds`` does."""
    if redis_client is None:
        return True
    key = _GATE_KEY.format(provider=provider, address=address)
    try:
        return bool(redis_client.set(key, b"1", nx=True, ex=max(1, round(seconds))))
    except redis.RedisError as exc:
        # Without the gate every worker would poll every tick: LINK would rate-limit us.
        log.warning("sender %s not polled: Redis unavailable (%s)", mask(address), exc)
        return False


def _ask(client: Provider, address: str, group: list[Watched]) -> list[tuple[int, pausing.Signal]]:
    """What the provider says of the sender, judged for each of its campaigns."""
    name = client.name
    try:
        info: SenderInfo | None = client.sender_info(address)
    except (LinkTransientError, LinkRequestError) as exc:
        wait = describe_duration(group[0].rails.poll_interval)
        log.warning("sender %s: phone number information unavailable (%s); next poll in %s",
                    mask(address), exc, wait)  # fmt: skip
        info = None
    listed: list[TemplateInfo] | None = None
    if any(c.template is not None and c.rails.template_status for c in group):
        try:
            listed = client.templates(address)
        except (LinkTransientError, LinkRequestError, ConfigurationError) as exc:
            log.warning("sender %s: template list unavailable (%s)", mask(address), exc)
    signals: list[tuple[int, pausing.Signal]] = []
    for campaign in group:
        signal = None
        if info is not None:
            how = f"{name}'s phone number information"
            signal = sender_signal(campaign, info.blocked, info.limited, how) or quality_signal(
                campaign, info.quality, how
            )
        if signal is None and listed is not None and campaign.template is not None:
            template_name, language = campaign.template
            found = next(
                (
                    t
                    for t in listed
                    if t.name == template_name and same_language(t.language, language)
                ),
                None,
            )
            if found is not None:
                signal = template_signal(campaign, found.status, f"{name}'s template list")
        if signal is not None:
            signals.append((campaign.id, signal))
    return signals
