"""The drop folder: campaign folders placed in ``inbox/`` are validated, queued and
filed under ``done/`` or ``failed/`` (with ``ERROR.txt`` saying why).

Layout under ``DROP_DIR`` (default ``campaigns/``)::

    inbox/       drop a campaign folder here (spec + CSV + media)
    processing/  taken: its campaign is being prepared
    done/        prepared; sending goes on (``dispatcher status``)
    failed/      refused or failed, with ERROR.txt

When is a folder complete? A copy in progress keeps changing it, so a folder is taken
once nothing in it (the folder itself included) changed for ``DROP_SETTLE_SECONDS``
(default 10), and no hidden file (``.name``: how rsync and many copy tools name a
file still being written) is in it. A folder that holds a file named ``READY`` is
taken at once: writers that can, drop that last. Taking is a rename into
``processing/``, which only one of several schedulers racing for a folder can win.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import Repeat, create_campaign
from dispatcher.db import Campaign, Database
from dispatcher.errors import (
    CampaignSpecError,
    DispatcherError,
    RepeatedCampaignError,
    StorageError,
)
from dispatcher.operations import control
from dispatcher.status import CampaignState

log = logging.getLogger(__name__)

READY_MARKER = "READY"
ERROR_FILE = "ERROR.txt"
ID_FILE = "CAMPAIGN_ID"  # written in a taken folder: which campaign it became


@dataclass(frozen=True, slots=True)
class DropFolder:
    root: Path
    settle_seconds: float = 10.0

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def processing(self) -> Path:
        return self.root / "processing"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    def ensure(self) -> None:
        for folder in (self.inbox, self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class Taken:
    folder: Path  # where it is now
    campaign_id: int | None
    error: str | None = None
    refusal: DispatcherError | None = None  # why it was refused, as raised


def ready(folder: Path, settle_seconds: float, now: float | None = None) -> bool:
    """Complete enough to take: a READY marker, or quiet for ``settle_seconds`` with no
    hidden (in-progress) file."""
    entries = list(folder.rglob("*"))
    if any(e.name == READY_MARKER and e.parent == folder for e in entries):
        return True
    if any(e.name.startswith(".") for e in entries):
        return False
    newest = max([folder.stat().st_mtime] + [e.stat().st_mtime for e in entries])
    return (now if now is not None else time.time()) - newest >= settle_seconds


def take_new(
    drop: DropFolder,
    db: Database,
    enqueue: Callable[[int], None],
    *,
    repeat_guard: timedelta = timedelta(days=30),
    only_noted: Callable[[Repeat], bool] = lambda _: False,
) -> list[Taken]:
    """Take every complete folder in the inbox (``take``); one the database cannot
    register now goes back to the inbox for the next round."""
    drop.ensure()
    taken: list[Taken] = []
    for folder in sorted(p for p in drop.inbox.iterdir() if p.is_dir()):
        try:
            if not ready(folder, drop.settle_seconds):
                continue
        except OSError:  # vanished or unreadable mid-look: next round
            continue
        try:
            found = take(
                drop, folder, db, enqueue, repeat_guard=repeat_guard, only_noted=only_noted
            )
        except StorageError as exc:  # the database is down: back in the inbox, retried
            log.warning("drop folder %s waits for the database: %s", folder.name, exc)
            continue
        if found is not None:
            taken.append(found)
    return taken


def take(
    drop: DropFolder,
    folder: Path,
    db: Database,
    enqueue: Callable[[int], None],
    *,
    again: bool = False,
    repeat_guard: timedelta = timedelta(days=30),
    only_noted: Callable[[Repeat], bool] = lambda _: False,
) -> Taken | None:
    """Take one complete campaign folder (from the inbox, or an upload staged beside
    it): move it into ``processing/``, validate it, create its campaign and ``enqueue``
    it unless its ``send_at`` is ahead (beat starts it then). A folder that fails
    validation, or repeats a campaign sent recently (the same folder dropped twice:
    ``registration.create_campaign``), goes to ``failed/`` with the reason, which
    ``Taken.refusal`` carries. None: another taker moved it first. ``StorageError``
    (the database is down): the folder is put back where it was."""
    drop.ensure()
    target = _free(drop.processing / folder.name)
    try:
        folder.rename(target)
    except OSError:
        return None  # another scheduler took it first
    try:
        loaded = preflight(target).loaded
    except (DispatcherError, OSError) as exc:
        error = describe(exc) if isinstance(exc, DispatcherError) else f"unreadable: {exc}"
        log.warning("drop folder %s refused: %s", folder.name, error)
        refusal = exc if isinstance(exc, DispatcherError) else DispatcherError(error)
        return Taken(file_failed(drop, target, error), None, error, refusal)
    try:
        campaign_id = create_campaign(
            db, loaded, again=again, repeat_guard=repeat_guard, only_noted=only_noted
        )
    except RepeatedCampaignError as exc:
        error = f"{exc}\nTo send it again on purpose, add allow_repeat: true to the spec."
        log.warning("drop folder %s refused: %s", folder.name, exc)
        return Taken(file_failed(drop, target, error), None, error, exc)
    except StorageError:
        target.rename(_free(folder))
        raise
    (target / ID_FILE).write_text(f"{campaign_id}\n", encoding="utf-8")
    # As ``create_campaign`` decided it, without asking the database again (a failure
    # here would leave a registered campaign that nobody queues). Its clock read first:
    # at the edge a scheduled campaign is queued too, and its prepare task waits.
    send_at = loaded.spec.send_at
    if send_at is not None and send_at > datetime.now(UTC):
        log.info("drop folder %s: campaign %s scheduled", folder.name, campaign_id)
        return Taken(target, campaign_id)
    try:
        enqueue(campaign_id)
    except Exception as exc:  # the broker: kombu's errors have no common base
        error = f"campaign {campaign_id} could not be queued: {exc}"
        with db.session() as session:
            control.cancel(session, campaign_id)
        return Taken(file_failed(drop, target, error), campaign_id, error, DispatcherError(error))
    log.info("drop folder %s: campaign %s queued", folder.name, campaign_id)
    return Taken(target, campaign_id)


def file_finished(drop: DropFolder, db: Database) -> list[Taken]:
    """Move folders in ``processing/`` whose campaign is prepared to ``done/``, and
    those whose campaign failed (pre-flight refusal, ...) or was cancelled before it was
    prepared to ``failed/`` with the reason."""
    moved: list[Taken] = []
    if not drop.processing.is_dir():
        return moved
    for folder in sorted(p for p in drop.processing.iterdir() if p.is_dir()):
        try:
            campaign_id = int((folder / ID_FILE).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue  # still being taken
        with db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None:
                continue
            error: str | None = None
            if campaign.state == CampaignState.FAILED or (
                campaign.state == CampaignState.CANCELLED and campaign.prepared_at is None
            ):
                reason = campaign.error or f"was {campaign.state}"
                error = f"campaign {campaign_id}: {reason}"
            elif campaign.prepared_at is None:
                continue
            try:
                target = _into(drop.failed if error else drop.done, folder)
            except FileNotFoundError:
                continue  # filed by a concurrent scan
            if error:
                (target / ERROR_FILE).write_text(error + "\n", encoding="utf-8")
            _repoint(session, campaign, folder, target)
            moved.append(Taken(target, campaign_id, error))
    return moved


def file_failed(drop: DropFolder, folder: Path, error: str) -> Path:
    target = _into(drop.failed, folder)
    (target / ERROR_FILE).write_text(error.rstrip() + "\n", encoding="utf-8")
    return target


def describe(exc: DispatcherError) -> str:
    """The error as an operator reads it: one problem a line, each naming its field."""
    if isinstance(exc, CampaignSpecError):
        lines = [f"{exc.title} in {Path(exc.path).name}:"]
        lines += [f"  {field}: {message}" for field, message in exc.problems]
        return "\n".join(lines)
    return str(exc)


def _into(parent: Path, folder: Path) -> Path:
    """Move ``folder`` into ``parent`` (FileNotFoundError: a concurrent scan was first)."""
    target = _free(parent / folder.name)
    folder.rename(target)
    return target


def _free(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... when a folder of that name is there."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _repoint(session: Session, campaign: Campaign, old: Path, new: Path) -> None:
    """The campaign's recorded paths follow its folder."""
    before, after = str(old.resolve()), str(new.resolve())
    if campaign.spec_path.startswith(before):
        campaign.spec_path = after + campaign.spec_path[len(before) :]
    if campaign.rejects_path and campaign.rejects_path.startswith(before):
        campaign.rejects_path = after + campaign.rejects_path[len(before) :]
