"""Registering a campaign: the spec is validated, then stored as a draft row.

A campaign folder sent twice messages everyone twice: a command run again, a drop
folder copied twice. So each campaign stores a digest of its inputs (the spec, every
recipients file, every media file, by content), and registering one whose inputs
match an earlier campaign of the same sender that sent (or is about to send) within
``REPEAT_GUARD_DAYS`` is refused, naming that campaign, unless the repeat is meant
(``--again``, the spec's ``allow_repeat``, a recurring schedule).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import exists, or_, select, text
from sqlalchemy.orm import Session

from dispatcher.campaigns import inputs
from dispatcher.campaigns.spec import LoadedCampaign
from dispatcher.db import Batch, Campaign, Database
from dispatcher.db.bulk import dialect_name
from dispatcher.db.timestamps import aware
from dispatcher.errors import RepeatedCampaignError
from dispatcher.status import BatchState, CampaignState

#: States in which a campaign has sent or will send without anyone acting again.
_UNDER_WAY = (
    CampaignState.DRAFT,
    CampaignState.SCHEDULED,
    CampaignState.PREPARING,
    CampaignState.SENDING,
    CampaignState.PAUSED,
)
#: Batch states of a request that left: its people may have been messaged.
_LEFT = (BatchState.SUBMITTING, BatchState.SUBMITTED, BatchState.IN_DOUBT)
_CHUNK_BYTES = 1 << 20
#: ``pg_advisory_xact_lock(namespace, key)``: the namespace of registration locks.
_LOCK_NAMESPACE = 0x5247  # "RG"


@dataclass(frozen=True, slots=True)
class Repeat:
    """The earlier campaign a new one repeats."""

    campaign_id: int
    created_at: datetime

    def describe(self) -> str:
        when = aware(self.created_at).astimezone(UTC)
        return f"campaign {self.campaign_id} of {when:%Y-%m-%d %H:%M} UTC"


def inputs_digest(loaded: LoadedCampaign) -> str:
    """sha256 over the contents of the spec, the recipients files and the media files,
    in the spec's order (names and folders do not count: a copy is the same input)."""
    digest = hashlib.sha256()
    files: list[Path] = [loaded.spec_path, *loaded.recipient_files()]
    for ref in loaded.media_refs():
        path = loaded.resolve(ref.file)
        if path not in files:
            files.append(path)
    for path in files:
        digest.update(f"\x1e{path.stat().st_size}\x1f".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def find_repeat(
    session: Session, source: str, digest: str, *, within: timedelta, now: datetime
) -> Repeat | None:
    """The latest campaign of ``source`` with these inputs, registered within ``within``,
    that sent to someone or is under way. A preview, or a campaign that failed or was
    cancelled before sending anyone, does not count."""
    # A request that left (answered or not: in doubt may have been queued) sent someone;
    # batches, not messages, so a million-person campaign costs no scan.
    sent_someone = exists().where(Batch.campaign_id == Campaign.id, Batch.state.in_(_LEFT))
    found = session.execute(
        select(Campaign.id, Campaign.created_at)
        .where(
            Campaign.inputs_sha256 == digest,
            Campaign.source == source,
            Campaign.created_at >= now - within,
            or_(Campaign.state.in_(_UNDER_WAY), sent_someone),
        )
        .order_by(Campaign.id.desc())
        .limit(1)
    ).first()
    return None if found is None else Repeat(found[0], found[1])


def create_campaign(
    db: Database,
    loaded: LoadedCampaign,
    *,
    again: bool = False,
    repeat_guard: timedelta = timedelta(days=30),
    only_noted: Callable[[Repeat], bool] = lambda _: False,
) -> int:
    """Store a validated campaign; the prepare task picks it up by id. One with a
    ``send_at`` still ahead is stored ``scheduled``: beat starts it when due
    (``schedules.start_due``).

    A repeat of an earlier campaign raises ``RepeatedCampaignError`` unless ``again``
    or the spec's ``allow_repeat`` says it is meant, or ``only_noted`` accepts it (the
    target is a simulator: nobody is messaged); then it is noted on the campaign.
    A zero ``repeat_guard`` turns the check off.
    """
    spec = loaded.spec
    now = datetime.now(UTC)
    later = spec.send_at is not None and spec.send_at > now
    digest = inputs_digest(loaded)
    with db.session() as session:
        notes: list[str] = []
        _one_at_a_time(session, digest)
        if repeat_guard > timedelta(0) and not (again or spec.allow_repeat):
            earlier = find_repeat(session, spec.sender.source, digest, within=repeat_guard,
                                  now=now)  # fmt: skip
            if earlier is not None:
                if not only_noted(earlier):
                    raise RepeatedCampaignError(earlier.campaign_id, earlier.describe())
                notes.append(f"repeats {earlier.describe()} (a simulator: nobody is messaged)")
        campaign = Campaign(
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_path=str(loaded.spec_path),
            source=spec.sender.source,
            state=CampaignState.SCHEDULED if later else CampaignState.DRAFT,
            inputs_sha256=digest,
            notes=notes or None,
        )
        session.add(campaign)
        session.flush()
        # Workers on any host read these, never the folder on this machine.
        inputs.store_inputs(session, campaign.id, loaded)
        return campaign.id


def _one_at_a_time(session: Session, digest: str) -> None:
    """Campaigns of the same files register one after the other (PostgreSQL: a lock
    held to the end of this transaction), so the repeat guard's look and the insert
    that follows are one step: two uploads of one folder at once (a job retried after a
    timeout) cannot both pass it. SQLite writes one transaction at a time anyway."""
    if dialect_name(session) != "postgresql":
        return
    key = int(digest[:8], 16) - (1 << 31)  # a signed 32-bit int from the digest
    session.execute(text("SELECT pg_advisory_xact_lock(:n, :k)"), {"n": _LOCK_NAMESPACE, "k": key})
