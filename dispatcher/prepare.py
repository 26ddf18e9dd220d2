"""Campaign preparation: load, resolve people, upload media once, cut batches.

Runs in the ``prepare`` queue. Everything it decides is written in one transaction
together with the move to ``sending``, so a worker that dies half-way leaves the
campaign in ``preparing`` and the redelivered task simply starts again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher import book
from dispatcher.campaign import CampaignSpec, LoadedCampaign
from dispatcher.compose import compose, content_key
from dispatcher.db import Batch, Campaign, CareWindow, Database, Message, Suppression
from dispatcher.errors import (
    CampaignSpecError,
    DispatcherError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.identity import Person, resolve
from dispatcher.link.client import LinkClient
from dispatcher.link.models import Level
from dispatcher.media import media_id_for, read_media
from dispatcher.message_spec import InvalidMessage
from dispatcher.recipients import RecipientsFile, Reject, Row
from dispatcher.render import MissingValue
from dispatcher.reports import write_rejects
from dispatcher.status import BatchState, CampaignState, MessageStatus

log = logging.getLogger(__name__)
_CHUNK = 500


@dataclass(slots=True)
class Audience:
    rows: list[Row] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    loaded: int = 0


def prepare_campaign(
    db: Database, client: LinkClient, campaign_id: int, *, reports_dir: Path | None
) -> list[str]:
    """Prepare a campaign; returns the ids of batches waiting to be sent.

    Idempotent: a campaign already past preparation just reports its pending batches.
    """
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise DispatcherError(f"campaign {campaign_id} does not exist")
        if campaign.state == CampaignState.SENDING:
            return pending_batches(session, campaign_id)
        if campaign.state not in (
            CampaignState.DRAFT,
            CampaignState.SCHEDULED,
            CampaignState.PREPARING,
        ):
            return []
        campaign.state = CampaignState.PREPARING
        spec = CampaignSpec.model_validate(campaign.spec)
        loaded = LoadedCampaign(spec=spec, spec_path=Path(campaign.spec_path))
    try:
        return _prepare(db, client, campaign_id, loaded, reports_dir)
    except DispatcherError as exc:
        log.warning("campaign %s cannot start: %s", campaign_id, exc)
        with db.session() as session:
            failed = session.get(Campaign, campaign_id)
            if failed is not None:
                failed.state = CampaignState.FAILED
                failed.error = str(exc)
                failed.finished_at = datetime.now(UTC)
        return []


def pending_batches(session: Session, campaign_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Batch.id)
            .where(Batch.campaign_id == campaign_id, Batch.state == BatchState.PENDING)
            .order_by(Batch.seq)
        )
    )


def _prepare(
    db: Database,
    client: LinkClient,
    campaign_id: int,
    loaded: LoadedCampaign,
    reports_dir: Path | None,
) -> list[str]:
    spec = loaded.spec
    level = _level(client, spec)
    rate = level.messages_per_second
    audience = _load(loaded)
    with db.session() as session:
        audience = _drop_suppressed(session, audience)
        people = resolve(audience.rows, book.lookup(session, _identifiers(audience.rows)))
        people, skipped = _apply_sender_rules(session, spec, people)
    media_ids = _media_ids(db, client, loaded)
    duplicates = len(audience.rows) - len(people) - len(skipped)
    messages, rejects = _compose(spec, people, media_ids)
    rejects = audience.rejects + skipped + rejects
    rejects.sort(key=lambda r: (str(r.file), r.line))
    folder = (reports_dir or loaded.folder / "reports") / f"campaign-{campaign_id}"
    rejects_path = folder / "rejects.csv"
    write_rejects(rejects_path, rejects)

    batch_size = min(spec.batch_size, rate)
    batches = list(_cut(campaign_id, messages, batch_size))
    try:
        with db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None or campaign.state != CampaignState.PREPARING:
                return []  # prepared by a concurrent delivery of this task
            _insert(session, campaign_id, batches)
            campaign.level = level.value
            campaign.rate_per_second = rate
            campaign.loaded = audience.loaded
            campaign.rejected = len(rejects)
            campaign.duplicates = duplicates
            campaign.rejects_path = str(rejects_path)
            campaign.prepared_at = datetime.now(UTC)
            campaign.state = CampaignState.SENDING if batches else CampaignState.COMPLETED
            if not batches:
                campaign.finished_at = campaign.prepared_at
    except IntegrityError as exc:
        # Either a concurrent delivery of this task prepared it first (the campaign is
        # now sending), or something is genuinely wrong: then say so on the campaign.
        with db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is not None and campaign.state == CampaignState.PREPARING:
                raise DispatcherError(f"could not store the batches: {exc.orig}") from exc
        log.info("campaign %s was prepared concurrently", campaign_id)
        return []
    return [batch_id for batch_id, _, _ in batches]


def _level(client: LinkClient, spec: CampaignSpec) -> Level:
    """The sender's throughput level: the spec's, else the phone number API's."""
    if spec.sender.level is not None and spec.sender.level is not Level.UNKNOWN:
        return spec.sender.level
    try:
        info = client.phone_number_info(spec.sender.source)
    except (LinkTransientError, LinkRequestError) as exc:
        # Not fatal: LINK rate-limits this API. STANDARD is the safe assumption; bad
        # credentials (LinkAuthError) do stop the campaign, since no send would work.
        log.warning("phone number information unavailable (%s); assuming STANDARD", exc)
        return Level.STANDARD
    if info.overall_health_status == "BLOCKED" or info.number_can_send_messages == "BLOCKED":
        reasons = (
            "; ".join(str(e.get("error_description", e)) for e in (info.errors or []))
            or "no reason given"
        )
        raise CampaignSpecError("sender", [("sender.source", f"LINK reports BLOCKED: {reasons}")])
    return info.level if info.level is not Level.UNKNOWN else Level.STANDARD


def _load(loaded: LoadedCampaign) -> Audience:
    spec = loaded.spec
    needed = spec.placeholders() - set(spec.defaults)
    audience = Audience()
    for index, path in enumerate(loaded.recipient_files()):
        with RecipientsFile(path, spec.default_region) as recipients:
            missing = sorted(needed - set(recipients.columns))
            if missing:
                raise CampaignSpecError(
                    str(loaded.spec_path),
                    [(f"recipients[{index}]", f"{path.name} has no column {', '.join(missing)}")],
                )
            for item in recipients:
                audience.loaded += 1
                if isinstance(item, Reject):
                    audience.rejects.append(item)
                else:
                    audience.rows.append(item)
    return audience


def _identifiers(rows: list[Row]) -> Iterator[str]:
    for row in rows:
        yield from row.identifiers


def _drop_suppressed(session: Session, audience: Audience) -> Audience:
    identifiers = list(dict.fromkeys(_identifiers(audience.rows)))
    suppressed: set[str] = set()
    for start in range(0, len(identifiers), _CHUNK):
        chunk = identifiers[start : start + _CHUNK]
        suppressed.update(
            session.scalars(select(Suppression.identifier).where(Suppression.identifier.in_(chunk)))
        )
    if not suppressed:
        return audience
    kept = Audience(loaded=audience.loaded, rejects=list(audience.rejects))
    for row in audience.rows:
        if suppressed.intersection(row.identifiers):
            kept.rejects.append(Reject(row.file, row.line, "suppressed (opted out)", row.values))
        else:
            kept.rows.append(row)
    return kept


def _media_ids(db: Database, client: LinkClient, loaded: LoadedCampaign) -> dict[str, str]:
    """Upload every ``file:`` of the message once (or reuse its cached id)."""
    ids: dict[str, str] = {}
    source = loaded.spec.sender.source
    for ref in loaded.media_refs():
        if ref.file not in ids:
            media = read_media(
                loaded.resolve(ref.file), ref.kind, template_header=ref.in_template_header
            )
            ids[ref.file] = media_id_for(db, client, source, media)
    return ids


# Seed 004 'Template message' / '24 hour customer care window'.
CARE_WINDOW = timedelta(hours=24)


def _apply_sender_rules(
    session: Session, spec: CampaignSpec, people: list[Person]
) -> tuple[list[Person], list[Reject]]:
    """Leave out people the message must not go to, each with the reason.

    * authentication templates never go to a BSUID (seed 004 'BSUID Limitations',
      Meta error 131062): such people are sent to their phone number, or not at all;
    * a non-template message needs an open customer care window: a message from the
      person within 24 h (unless the spec says ``outside_care_window: send``).
    """
    kept: list[Person] = []
    skipped: list[Reject] = []
    open_windows: set[str] = set()
    needs_window = not spec.is_template and spec.outside_care_window == "skip"
    if needs_window:
        open_windows = _open_care_windows(session, [i for p in people for i in p.identifiers])
    for person in people:
        row = person.first
        if spec.authentication:
            if not person.msisdns:
                skipped.append(
                    Reject(row.file, row.line, "authentication templates cannot be sent to a "
                           "BSUID (Meta error 131062) and no phone number is known", row.values)
                )  # fmt: skip
                continue
            person.bsuids.clear()
            person.parent_bsuids.clear()
        elif needs_window and not open_windows.intersection(person.identifiers):
            skipped.append(
                Reject(row.file, row.line, "outside the 24-hour customer care window "
                       "(no message from this person in the last 24 h)", row.values)
            )  # fmt: skip
            continue
        kept.append(person)
    return kept, skipped


def _open_care_windows(session: Session, identifiers: list[str]) -> set[str]:
    since = datetime.now(UTC) - CARE_WINDOW
    found: set[str] = set()
    for start in range(0, len(identifiers), _CHUNK):
        chunk = identifiers[start : start + _CHUNK]
        found.update(
            session.scalars(
                select(CareWindow.identifier).where(
                    CareWindow.identifier.in_(chunk), CareWindow.last_incoming_at >= since
                )
            )
        )
    return found


@dataclass(slots=True)
class _Composed:
    person: Person
    message: dict[str, Any]
    key: str


def _compose(
    spec: CampaignSpec, people: list[Person], media_ids: dict[str, str]
) -> tuple[list[_Composed], list[Reject]]:
    composed: list[_Composed] = []
    rejects: list[Reject] = []
    for person in people:
        row = person.first
        try:
            message = compose(spec, row.values, media_ids)
        except MissingValue as exc:
            reason = f"missing value for '{exc.column}'"
            rejects.append(Reject(row.file, row.line, reason, row.values))
            continue
        except InvalidMessage as exc:
            reason = f"the message for this row is invalid: {exc}"
            rejects.append(Reject(row.file, row.line, reason, row.values))
            continue
        composed.append(_Composed(person, message, content_key(message)))
    return composed, rejects


def _cut(
    campaign_id: int, messages: list[_Composed], batch_size: int
) -> Iterator[tuple[str, dict[str, Any], list[_Composed]]]:
    """Group identical content (first appearance order) and chunk each group."""
    groups: dict[str, list[_Composed]] = {}
    for item in messages:
        groups.setdefault(item.key, []).append(item)
    seq = 0
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            seq += 1
            chunk = members[start : start + batch_size]
            yield f"c{campaign_id}-b{seq:06d}", {"messages": [chunk[0].message]}, chunk


def _insert(
    session: Session,
    campaign_id: int,
    batches: list[tuple[str, dict[str, Any], list[_Composed]]],
) -> None:
    batch_rows = [
        {
            "id": batch_id,
            "campaign_id": campaign_id,
            "seq": seq,
            "state": BatchState.PENDING,
            "payload": payload,
            "size": len(members),
        }
        for seq, (batch_id, payload, members) in enumerate(batches, start=1)
    ]
    message_rows = [
        {
            "campaign_id": campaign_id,
            "identity_key": item.person.key,
            "destination": item.person.destination,
            "identifiers": item.person.identifiers,
            "source_line": item.person.first.line,
            "params": item.person.first.values,
            "batch_id": batch_id,
            "position": position,
            "status": MessageStatus.QUEUED,
        }
        for batch_id, _, members in batches
        for position, item in enumerate(members)
    ]
    for start in range(0, len(batch_rows), _CHUNK):
        session.execute(insert(Batch), batch_rows[start : start + _CHUNK])
    for start in range(0, len(message_rows), _CHUNK):
        session.execute(insert(Message), message_rows[start : start + _CHUNK])
