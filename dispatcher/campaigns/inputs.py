"""A campaign's files in shared storage: stored when it is registered, read by whichever
worker prepares it, on any host.

The spec, every recipients file and every media file are stored (``db.blobs``: in the
database, content-addressed, chunked) under the name the spec gives them; a worker
fetches them into a temporary folder for the time it prepares the campaign and never
opens the registering machine's paths. Reports (the rejects file) are stored the same
way, so ``dispatcher rejects ID`` fetches them from any host. Campaigns registered
before inputs were stored are read from their folder, as then.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import LoadedCampaign
from dispatcher.db import Campaign, Database, blobs
from dispatcher.db.models import CampaignFile
from dispatcher.errors import DispatcherError
from dispatcher.status import FINAL_CAMPAIGN_STATES

SPEC, RECIPIENTS, MEDIA, REPORT = "spec", "recipients", "media", "report"
_INPUTS = (SPEC, RECIPIENTS, MEDIA)
REJECTS = "rejects.csv"


def input_files(loaded: LoadedCampaign) -> list[tuple[str, str, Path]]:
    """(role, name as the spec gives it, local path) of every file the campaign reads."""
    files = [(SPEC, loaded.spec_path.name, loaded.spec_path)]
    files += [(RECIPIENTS, name, loaded.resolve(name)) for name in loaded.spec.recipients]
    seen: set[str] = set()
    for ref in loaded.media_refs():
        if ref.file not in seen:
            seen.add(ref.file)
            files.append((MEDIA, ref.file, loaded.resolve(ref.file)))
    return files


def store_inputs(session: Session, campaign_id: int, loaded: LoadedCampaign) -> None:
    """Keep every file the campaign reads, in the registering transaction."""
    for role, name, path in input_files(loaded):
        _store(session, campaign_id, role, name, path)


def store_report(session: Session, campaign_id: int, name: str, path: Path) -> None:
    """Keep a report (a later one of the same name replaces it)."""
    session.execute(
        delete(CampaignFile).where(
            CampaignFile.campaign_id == campaign_id,
            CampaignFile.role == REPORT,
            CampaignFile.name == name,
        )
    )
    _store(session, campaign_id, REPORT, name, path)


def _store(session: Session, campaign_id: int, role: str, name: str, path: Path) -> None:
    sha, size = blobs.put(session, path)
    session.add(CampaignFile(campaign_id=campaign_id, role=role, name=name, sha256=sha, size=size))
    session.flush()


@contextlib.contextmanager
def materialized(
    db: Database, campaign_id: int, loaded: LoadedCampaign
) -> Iterator[LoadedCampaign]:
    """``loaded`` with its files fetched from storage into a temporary folder (removed
    afterwards); as it is when the campaign has no stored inputs (registered before)."""
    with db.session() as session:
        rows = session.execute(
            select(CampaignFile.role, CampaignFile.name, CampaignFile.sha256)
            .where(CampaignFile.campaign_id == campaign_id, CampaignFile.role.in_(_INPUTS))
            .order_by(CampaignFile.id)
        ).all()
    if not rows:
        yield loaded
        return
    with tempfile.TemporaryDirectory(prefix=f"campaign-{campaign_id}-") as tmp:
        files: dict[str, Path] = {}
        with db.session() as session:
            for index, (role, name, sha) in enumerate(rows):
                # A folder each: the file keeps its own name (uploads and notes say it).
                target = Path(tmp) / f"{index:03d}" / Path(name).name
                target.parent.mkdir()
                with target.open("wb") as handle:
                    blobs.copy_to(session, sha, handle)
                if role != SPEC:
                    files[name] = target
        yield loaded.model_copy(update={"files": files})


def report_sha(session: Session, campaign_id: int, name: str) -> str | None:
    """The stored content of a campaign's report ``name``; None when it has none (yet)."""
    return session.scalar(
        select(CampaignFile.sha256).where(
            CampaignFile.campaign_id == campaign_id,
            CampaignFile.role == REPORT,
            CampaignFile.name == name,
        )
    )


def fetch_report(db: Database, campaign_id: int, name: str, target: BinaryIO) -> bool:
    """Writes a stored report into ``target``; False when the campaign has none (yet)."""
    with db.session() as session:
        if session.get(Campaign, campaign_id) is None:
            raise DispatcherError(f"no campaign {campaign_id}")
        sha = report_sha(session, campaign_id, name)
        if sha is None:
            return False
        blobs.copy_to(session, sha, target)
    return True


@dataclass(frozen=True, slots=True)
class Purged:
    campaigns: int
    files: int
    contents: int


def purge(db: Database, older_than: timedelta | None, *, now: datetime | None = None) -> Purged:
    """Remove the stored files of campaigns that ended more than ``older_than`` ago
    (their rows, counts and per-person statuses stay; None: none), and contents nobody
    uses (a deleted campaign's among them)."""
    if older_than is None:
        with db.session() as session:
            return Purged(0, 0, blobs.drop_unused(session))
    cutoff = (now or datetime.now(UTC)) - older_than
    with db.session() as session:
        ended = select(Campaign.id).where(
            Campaign.state.in_([state.value for state in FINAL_CAMPAIGN_STATES]),
            Campaign.finished_at.is_not(None),
            Campaign.finished_at < cutoff,
        )
        ids = sorted(
            set(
                session.scalars(
                    select(CampaignFile.campaign_id).where(CampaignFile.campaign_id.in_(ended))
                )
            )
        )
        files = 0
        for start in range(0, len(ids), 500):
            files += session.execute(  # type: ignore[attr-defined]
                delete(CampaignFile).where(CampaignFile.campaign_id.in_(ids[start : start + 500]))
            ).rowcount
        contents = blobs.drop_unused(session)
    return Purged(len(ids), files, contents)
