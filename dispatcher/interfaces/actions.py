"""What the CLI, the REST API and the web console all do to campaigns, once.

Each action is a plain function over a ``Database`` and the settings (no web types),
so none of the three front ends can skip a rule the others keep: uploads are staged
under ``DROP_DIR`` and validated by the same pre-flight, then taken exactly as the
drop folder takes a folder (``dropfolder.take``: a rename into ``processing/``, the
repeat guard, queued or scheduled); a dry run is ``dispatcher run --dry-run``;
resume queues through ``workers.tasks.hand_out`` as ``dispatcher resume`` does; the
status document is ``dispatcher status --json``'s.

Errors are ``DispatcherError``s; the subclasses below say which answer a caller gets
(``NotFound`` 404, ``Conflict`` 409, ``Invalid`` 422, ``TooLarge`` 413,
``Unavailable`` 503); any other ``DispatcherError`` is the caller's mistake (400).

Blocking: every function here does database or file work; a web route runs it in a
thread (``starlette.concurrency.run_in_threadpool``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

import yaml
from sqlalchemy import select

from dispatcher.campaigns import dropfolder, lifecycle
from dispatcher.campaigns.spec import SPEC_NAMES
from dispatcher.db import Campaign, Database, Schedule
from dispatcher.db.models import CampaignFile
from dispatcher.errors import (
    CampaignSpecError,
    ConfigurationError,
    DispatcherError,
    RepeatedCampaignError,
    StorageError,
)
from dispatcher.operations import control, progress
from dispatcher.settings import Settings, get_settings
from dispatcher.status import FINAL_CAMPAIGN_STATES

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: An upload's size, unpacked: the request, every file together, each zip member.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_FILES = 200
#: Campaigns a list answers at most.
MAX_LIST = 100
#: Identifiers one suppression call takes at most.
MAX_IDENTIFIERS = 10_000
_SPEC_SUFFIXES = (".yaml", ".yml", ".toml")
#: Files a zip tool adds that are no part of the campaign.
_NOISE = ("__MACOSX", ".DS_Store", "Thumbs.db")


# -- errors ------------------------------------------------------------------------------


class NotFound(DispatcherError):
    """No such campaign or schedule."""


class Conflict(DispatcherError):
    """The campaign is in a state that does not allow this (or repeats a recent one)."""


class Invalid(DispatcherError):
    """The request's content is wrong; ``problems`` name the fields, as ``dispatcher
    validate`` does."""

    def __init__(self, message: str, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class TooLarge(DispatcherError):
    """An upload over ``MAX_UPLOAD_BYTES`` or ``MAX_UPLOAD_FILES``."""


class Unavailable(DispatcherError):
    """The broker or database cannot take the work now; trying again later may."""


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submitted:
    """What became of uploaded files: a campaign (``campaign_id``, its ``state``:
    draft = queued, scheduled, previewed, or failed in a dry run), or the validation
    ``problems`` and no campaign."""

    campaign_id: int | None
    state: str | None
    problems: list[dict[str, str]] = field(default_factory=list)
    forecast: dict[str, Any] | None = None  # a dry run's
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # a dry run that failed: why

    @property
    def ok(self) -> bool:
        """Registered and valid; a dry run whose preparation failed is not."""
        return self.campaign_id is not None and not self.problems and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Resumed:
    campaign_id: int
    batches_queued: int
    canary_waits: bool  # the rest still waits for its canary to be judged
    queued: bool  # False: no broker (no REDIS_URL), nothing could be queued now

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- campaigns: submit, start --------------------------------------------------------------


def submit(
    db: Database,
    files: Mapping[str, bytes],
    *,
    dry_run: bool,
    again: bool = False,
    settings: Settings | None = None,
    enqueue: Callable[[int], None] | None = None,
) -> Submitted:
    """A campaign from uploaded files (relative path -> content; a single ``.zip`` is
    unpacked): staged under ``DROP_DIR/uploads``, validated, then taken as the drop
    folder takes a folder, or with ``dry_run`` prepared without sending and its
    forecast returned (``dispatcher run --dry-run``). Invalid files give ``problems``
    and register nothing. ``enqueue`` queues a prepare task (default: the broker)."""
    settings = settings or get_settings()
    if not dry_run and settings.embedded_broker and enqueue is None:
        raise Unavailable(
            "REDIS_URL is not set: no worker would prepare or send the campaign "
            "(a dry run works without it)"
        )
    try:
        with _staged(settings, files) as folder:
            return _register(db, folder, settings, dry_run=dry_run, again=again, enqueue=enqueue)
    except OSError as exc:  # DROP_DIR full, missing or not writable: the operator's to fix
        raise Unavailable(f"the drop folder cannot take the upload now: {exc}") from exc


def start(
    db: Database,
    campaign_id: int,
    *,
    again: bool = False,
    settings: Settings | None = None,
    enqueue: Callable[[int], None] | None = None,
) -> Submitted:
    """Send a previewed campaign for real. A preview is not sent as it is (people may
    have opted out since, the identity book moved on): its stored files are submitted
    again as a new campaign, and the preview is deleted once that one is registered.
    The CLI's way is the same: ``dispatcher run`` on the folder, ``dispatcher delete``."""
    settings = settings or get_settings()
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        # Claimed in the same transaction as the look: of two starts at once (a job
        # retried after a timeout, a double click), one sends and the other is told.
        if campaign.state != "previewed" or not lifecycle.claim_preview(session, campaign_id):
            raise Conflict(
                f"campaign {campaign_id} is {campaign.state}: only a previewed campaign "
                "(a dry run) can be started"
            )
        spec_name = Path(campaign.spec_path).name
        rows = session.execute(
            select(CampaignFile.role, CampaignFile.name, CampaignFile.sha256)
            .where(CampaignFile.campaign_id == campaign_id, CampaignFile.role != "report")
            .order_by(CampaignFile.id)
        ).all()
    found: Submitted | None = None
    try:
        if not rows:
            raise Conflict(
                f"campaign {campaign_id} has no stored files (purged): upload them again"
            )
        from dispatcher.db import blobs

        files: dict[str, bytes] = {}
        with db.session() as session:
            for role, name, sha in rows:
                handle = io.BytesIO()
                blobs.copy_to(session, sha, handle)
                files[spec_name if role == "spec" else name] = handle.getvalue()
        found = submit(db, files, dry_run=False, again=again, settings=settings, enqueue=enqueue)
    finally:
        with contextlib.suppress(DispatcherError), db.session() as session:
            if found is not None and found.ok:
                control.delete(session, campaign_id)
            else:
                lifecycle.release_preview(session, campaign_id)
    return found


def _register(
    db: Database,
    folder: Path,
    settings: Settings,
    *,
    dry_run: bool,
    again: bool,
    enqueue: Callable[[int], None] | None,
) -> Submitted:
    from dispatcher.campaigns.checks import preflight

    try:
        loaded = preflight(folder).loaded
    except CampaignSpecError as exc:
        return Submitted(None, None, _problems(exc, folder))
    except DispatcherError as exc:
        return Submitted(None, None, [{"field": "(file)", "message": _unstaged(str(exc), folder)}])
    except OSError as exc:
        return Submitted(None, None, [{"field": "(file)", "message": f"unreadable: {exc}"}])
    if dry_run:
        return _dry_run(db, loaded, settings)
    drop = dropfolder.DropFolder(settings.drop_dir, settings.drop_settle_seconds)
    try:
        taken = dropfolder.take(
            drop,
            folder,
            db,
            enqueue or _enqueue_prepare,
            again=again,
            repeat_guard=timedelta(days=settings.repeat_guard_days),
            only_noted=lambda _: _simulator(),
        )
    except StorageError as exc:
        raise Unavailable(f"the database cannot take the campaign now: {exc}") from exc
    if taken is None:
        raise Conflict("the upload was taken by another request")
    if taken.campaign_id is None or taken.refusal is not None:
        refusal = taken.refusal
        if isinstance(refusal, RepeatedCampaignError):
            raise Conflict(str(refusal))
        if isinstance(refusal, CampaignSpecError):
            return Submitted(None, None, _problems(refusal, taken.folder))
        if taken.campaign_id is not None:  # registered, but the broker refused it
            raise Unavailable(f"{taken.error}; it was cancelled: submit it again later")
        return Submitted(None, None, [{"field": "(file)", "message": taken.error or "refused"}])
    return _submitted(db, taken.campaign_id)


def _dry_run(db: Database, loaded: Any, settings: Settings) -> Submitted:
    """``running.dry_run`` without a terminal: stored as previewed, with its forecast."""
    from dispatcher.campaigns.registration import create_campaign
    from dispatcher.interfaces import forecasts
    from dispatcher.preparation import forecast as fc
    from dispatcher.preparation.prepare import prepare_campaign
    from dispatcher.providers import offline_provider

    card = _rate_card()
    # A preview sends nothing: a repeat is worth a note, not a refusal.
    campaign_id = create_campaign(
        db,
        loaded,
        repeat_guard=timedelta(days=settings.repeat_guard_days),
        only_noted=lambda _: True,
    )
    reports = settings.reports_dir or settings.drop_dir / "reports"
    prepare_campaign(db, offline_provider(), campaign_id, reports_dir=reports, dry_run=True)
    found = _submitted(db, campaign_id)
    if found.state != "previewed":
        return found
    forecast = fc.from_stored(db, campaign_id)
    costing = fc.cost(forecast, card) if card is not None else None
    fc.store(db, campaign_id, forecast, costing)
    return dataclasses.replace(found, forecast=_plain(forecasts.as_json(forecast, costing)))


def _submitted(db: Database, campaign_id: int) -> Submitted:
    with db.session() as session:
        row = session.execute(
            select(Campaign.state, Campaign.notes, Campaign.error).where(Campaign.id == campaign_id)
        ).one()
    return Submitted(campaign_id, str(row.state), notes=list(row.notes or []), error=row.error)


def _enqueue_prepare(campaign_id: int) -> None:
    from dispatcher.interfaces.running import enqueue_prepare

    enqueue_prepare(campaign_id)


def _simulator() -> bool:
    """Asked only of a repeat: is the provider the project's simulator (nobody is
    messaged, so the repeat is only noted)? Unknown counts as no."""
    from dispatcher.interfaces.running import link_is_simulator

    try:
        return link_is_simulator()
    except Exception:  # an unreachable or unconfigured provider: refuse the repeat
        return False


def _rate_card() -> Any:
    """``RATE_CARD`` when set and readable; a bad one leaves the forecast unpriced
    rather than refusing the upload."""
    from dispatcher.interfaces import forecasts

    try:
        return forecasts.rate_card(None)
    except DispatcherError as exc:
        log.warning("rate card not used: %s", exc)
        return None


def _problems(exc: CampaignSpecError, folder: Path) -> list[dict[str, str]]:
    return [
        {"field": field_path, "message": _unstaged(message, folder)}
        for field_path, message in exc.problems
    ]


def _unstaged(message: str, folder: Path) -> str:
    """A message without the staging folder's path (the caller knows its files by name)."""
    for prefix in {str(folder.resolve()), str(folder)}:
        message = message.replace(prefix + "/", "").replace(prefix, ".")
    return message


# -- uploads -------------------------------------------------------------------------------


@contextlib.contextmanager
def _staged(settings: Settings, files: Mapping[str, bytes]) -> Iterator[Path]:
    """The files written into a fresh hidden folder under ``DROP_DIR/uploads`` (hidden:
    nothing scanning the drop folder takes it half-written), removed afterwards with
    whatever was not taken."""
    unpacked = unpack(files)
    holder = settings.drop_dir / "uploads" / f".{uuid.uuid4().hex}"
    folder = holder / f"upload-{holder.name[1:9]}"
    try:
        folder.mkdir(parents=True)
        write_files(folder, unpacked)
        yield folder
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def with_send_at(files: Mapping[str, bytes], when: datetime) -> dict[str, bytes]:
    """The upload with ``send_at`` set in its YAML spec (the console's Schedule: people
    who do not edit YAML); the campaign then waits for it as one dropped with that
    field does. Comments in the spec are not kept. A time already past is refused: the
    campaign would go at once while the page said it waits."""
    if when <= datetime.now(UTC):
        raise Invalid(
            "send_at has passed",
            [{"field": "send_at", "message": f"{when:%Y-%m-%d %H:%M} UTC has passed: pick a "
              "later time, or start it now"}],
        )  # fmt: skip
    unpacked = unpack(files)
    name = next((n for n in SPEC_NAMES if n in unpacked), None)
    if name is None or name.endswith(".toml"):
        raise Invalid(
            "no YAML spec",
            [{"field": "send_at", "message": "schedule a campaign.yaml (a TOML spec: write "
              "send_at in it and press Start)"}],
        )  # fmt: skip
    try:
        spec = yaml.safe_load(unpacked[name])
    except yaml.YAMLError as exc:
        raise Invalid(
            "bad YAML", [{"field": "(file)", "message": f"{name}: not YAML: {exc}"}]
        ) from None
    if not isinstance(spec, dict):
        raise Invalid("bad spec", [{"field": "(file)", "message": f"{name}: not a mapping"}])
    spec["send_at"] = when.isoformat()
    unpacked[name] = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode()
    return unpacked


def unpack(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Uploaded files by safe relative path: a single zip unpacked (one top folder
    dropped), a lone spec file under another name called ``campaign.*``. Raises
    ``Invalid`` for an unsafe or empty upload, ``TooLarge`` over the caps."""
    if len(files) > MAX_UPLOAD_FILES:
        raise TooLarge(f"{len(files)} files: at most {MAX_UPLOAD_FILES} in one upload")
    if sum(len(data) for data in files.values()) > MAX_UPLOAD_BYTES:
        raise TooLarge(f"the upload is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    found = {_safe(name): data for name, data in files.items() if not _noise(name)}
    if len(found) == 1 and next(iter(found)).lower().endswith(".zip"):
        found = _unzip(next(iter(found.values())))
    if not found:
        raise Invalid("no files", [{"field": "files", "message": "no campaign files uploaded"}])
    tops = {PurePosixPath(name).parts[0] for name in found}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in found):
        top = next(iter(tops))  # a zip of the folder, not of its contents
        found = {str(PurePosixPath(n).relative_to(top)): data for n, data in found.items()}
    if not any(name in found for name in SPEC_NAMES):
        specs = [n for n in found if "/" not in n and n.lower().endswith(_SPEC_SUFFIXES)]
        if len(specs) == 1:
            suffix = ".toml" if specs[0].lower().endswith(".toml") else ".yaml"
            found[f"campaign{suffix}"] = found.pop(specs[0])
    return found


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _safe(name: str) -> str:
    """A relative POSIX path inside the upload, or ``Invalid``."""
    cleaned = name.replace("\\", "/").strip()
    path = PurePosixPath(cleaned)
    if (
        not cleaned
        or path.is_absolute()
        or ".." in path.parts
        or ":" in path.parts[0]
        or any(part.startswith(".") for part in path.parts)
        or "\x00" in cleaned
    ):
        raise Invalid(
            f"unsafe file name {name!r}",
            [{"field": "files", "message": f"{name!r}: not a plain relative file name"}],
        )
    return str(path)


def _noise(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(part in _NOISE or part.startswith("._") for part in parts)


def _unzip(data: bytes) -> dict[str, bytes]:
    """A zip's regular files, checked before anything is extracted: names safe, no
    links, the count and the unpacked size (as the zip declares it, and as read)
    within the caps."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise Invalid(
            "not a zip", [{"field": "files", "message": f"not a zip file: {exc}"}]
        ) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not _noise(m.filename)]
        if len(members) > MAX_UPLOAD_FILES:
            raise TooLarge(f"the zip holds {len(members)} files: at most {MAX_UPLOAD_FILES}")
        if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
            raise TooLarge(f"the zip unpacks to over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        found: dict[str, bytes] = {}
        total = 0
        for member in members:
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise Invalid(
                    "link in zip",
                    [{"field": "files", "message": f"{member.filename}: links are not taken"}],
                )
            name = _safe(member.filename)
            try:
                with archive.open(member) as handle:
                    content = handle.read(MAX_UPLOAD_BYTES - total + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                raise Invalid(
                    "bad zip", [{"field": "files", "message": f"{member.filename}: {exc}"}]
                ) from None
            total += len(content)
            if total > MAX_UPLOAD_BYTES:
                raise TooLarge(f"the zip unpacks to over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
            found[name] = content
    return found


# -- campaigns: control --------------------------------------------------------------------


def pause(db: Database, campaign_id: int) -> None:
    """Stop sending (every worker, within a second); ``resume`` goes on."""
    with db.session() as session:
        _known(session, campaign_id)
        _state_change(lambda: control.pause(session, campaign_id))


def resume(db: Database, campaign_id: int, *, settings: Settings | None = None) -> Resumed:
    """Go on from where it stopped: its pending batches are queued again (and its
    preparation, when it was paused before that ended)."""
    settings = settings or get_settings()
    with db.session() as session:
        _known(session, campaign_id)
        resumed = _state_change(lambda: control.resume(session, campaign_id))
    if settings.embedded_broker:
        return Resumed(campaign_id, 0, resumed.canary_waits, queued=False)
    from dispatcher.interfaces.running import enqueue_prepare
    from workers.tasks import hand_out

    try:
        if resumed.prepare_again:
            enqueue_prepare(campaign_id)
        hand_out(db, campaign_id, resumed.batch_ids)
    except Exception as exc:  # the broker: kombu's errors have no common base
        raise Unavailable(
            f"campaign {campaign_id} is sending again, but its work could not be queued "
            f"({type(exc).__name__}: {exc}); resume it again"
        ) from None
    return Resumed(campaign_id, len(resumed.batch_ids), resumed.canary_waits, queued=True)


def cancel(db: Database, campaign_id: int) -> int:
    """Stop for good; returns how many people will never be sent their message."""
    with db.session() as session:
        _known(session, campaign_id)
        return _state_change(lambda: control.cancel(session, campaign_id))


def _known(session: Any, campaign_id: int) -> None:
    if session.get(Campaign, campaign_id) is None:
        raise NotFound(f"no campaign {campaign_id}")


def _state_change(change: Callable[[], _T]) -> _T:
    """``control``'s refusals (the campaign is in another state) as ``Conflict``."""
    try:
        return change()
    except (NotFound, StorageError):
        raise
    except DispatcherError as exc:
        raise Conflict(str(exc)) from None


# -- campaigns: reading --------------------------------------------------------------------


def status_document(
    db: Database, campaign_id: int, *, settings: Settings | None = None
) -> dict[str, Any] | None:
    """``dispatcher status ID --json``'s document (its one element): the progress, the
    limiter's rate factor while sending, a scheduled or previewed campaign's forecast."""
    with db.session() as session:
        found = progress.progress(session, campaign_id)
    if found is None:
        return None
    current = with_rate_factor(found, settings)
    document = current.as_dict()
    shown = _forecast(db, current)
    if shown is not None:
        document["forecast"] = shown
    return _plain(document)


class Settled:
    """Status documents of campaigns that ended, kept a while: a list polled every few
    seconds (the console, a dashboard's job) would otherwise count every message of
    every finished campaign each time (0.2 s at 100,000 messages). Their counts move
    little once ended (a late read receipt); a state change is seen at once."""

    def __init__(self, seconds: float = 30.0) -> None:
        self.seconds = seconds
        self._kept: dict[int, tuple[float, str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, campaign_id: int, state: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._kept.get(campaign_id)
        if found is None or found[1] != state or time.monotonic() - found[0] > self.seconds:
            return None
        return found[2]

    def keep(self, campaign_id: int, state: str, document: dict[str, Any]) -> None:
        if state not in FINAL_CAMPAIGN_STATES:
            return
        with self._lock:
            self._kept[campaign_id] = (time.monotonic(), state, document)
            if len(self._kept) > 4 * MAX_LIST:  # the oldest looks go first
                for stale in sorted(self._kept, key=lambda k: self._kept[k][0])[:MAX_LIST]:
                    del self._kept[stale]


def campaigns(
    db: Database,
    limit: int = 20,
    offset: int = 0,
    *,
    settings: Settings | None = None,
    settled: Settled | None = None,
) -> list[dict[str, Any]]:
    """The latest campaigns' status documents, newest first (``dispatcher status
    --json``: the 20 latest); those that ended from ``settled`` while it keeps them."""
    limit = max(0, min(limit, MAX_LIST))
    found: list[dict[str, Any]] = []
    with db.session() as session:
        listed = session.execute(
            select(Campaign.id, Campaign.state)
            .order_by(Campaign.id.desc())
            .limit(limit)
            .offset(max(0, offset))
        ).all()
        for campaign_id, state in listed:
            document = settled.get(campaign_id, state) if settled else None
            if document is None:
                current = progress.progress(session, campaign_id)
                if current is None:
                    continue
                document = _plain(with_rate_factor(current, settings).as_dict())
                if settled is not None:
                    settled.keep(campaign_id, current.state, document)
            found.append(document)
    return found


def with_rate_factor(
    current: progress.Progress, settings: Settings | None = None
) -> progress.Progress:
    """The sender's current share of its level, from the shared limiter (when set)."""
    settings = settings or get_settings()
    if settings.redis_url is None or current.state != "sending":
        return current
    import redis

    from dispatcher.sending.throttle import Throttle

    client = redis.Redis.from_url(settings.redis_url)
    try:
        factor = Throttle(client).factor(current.source)
    except DispatcherError:
        return current
    finally:
        client.close()
    return dataclasses.replace(current, rate_factor=factor)


def _forecast(db: Database, current: progress.Progress) -> dict[str, Any] | None:
    """A scheduled campaign's forecast (computed now), a previewed one's (stored);
    None when there is none or it cannot be computed."""
    from dispatcher.interfaces import forecasts
    from dispatcher.preparation.forecast import cost, forecast_of

    if current.state not in ("scheduled", "previewed"):
        return None
    card = _rate_card()
    try:
        found = forecast_of(db, current.campaign_id)
    except DispatcherError as exc:
        log.info("forecast of campaign %s not available: %s", current.campaign_id, exc)
        return None
    if found is None:
        return None
    return forecasts.as_json(found, cost(found, card) if card is not None else None)


def report_csv(db: Database, campaign_id: int) -> bytes:
    """``dispatcher report ID``: one line per recipient, numbers whole."""
    handle = io.BytesIO()
    write_report(db, campaign_id, handle)
    return handle.getvalue()


def write_report(db: Database, campaign_id: int, handle: BinaryIO) -> int:
    """``report_csv`` into ``handle`` (a spooled file for a large campaign); returns
    the lines written."""
    from dispatcher.operations.reports import write_outcomes
    from dispatcher.operations.shares import shared_numbers

    text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=True)
    try:
        with db.session() as session:
            _known(session, campaign_id)
            shared = shared_numbers(session, campaign_id)  # before the rows' stream opens
            return write_outcomes(text, progress.outcomes(session, campaign_id), shared)
    finally:
        text.flush()
        text.detach()  # the caller's handle stays open


def rejects_csv(db: Database, campaign_id: int) -> bytes | None:
    """``dispatcher rejects ID``; None until preparation wrote it."""
    handle = io.BytesIO()
    return handle.getvalue() if write_rejects(db, campaign_id, handle) else None


def write_rejects(db: Database, campaign_id: int, handle: BinaryIO) -> bool:
    """``rejects_csv`` into ``handle``; False (nothing written) until preparation wrote
    the report."""
    from dispatcher.campaigns.inputs import REJECTS, fetch_report

    with db.session() as session:
        _known(session, campaign_id)
    return fetch_report(db, campaign_id, REJECTS, handle)


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    """JSON types only, as ``status --json`` prints them (times and the like as text)."""
    loaded: dict[str, Any] = json.loads(json.dumps(document, default=str, ensure_ascii=False))
    return loaded


# -- suppressions --------------------------------------------------------------------------


def suppressions(
    db: Database, *, limit: int | None = None, offset: int = 0, masked: bool = False
) -> list[dict[str, str]]:
    """The opt-out list, oldest first (``dispatcher suppress list --json``); numbers
    masked with ``masked`` (what a screen shows)."""
    from dispatcher.audience import suppressions as book
    from dispatcher.masking import mask

    found = [e.as_dict() for e in book.entries(db, limit=limit, offset=offset)]
    if masked:
        for entry in found:
            entry["identifier"] = mask(entry["identifier"])
    return found


def suppress(
    db: Database, identifiers: list[str], *, reason: str = "opted out", region: str | None = None
) -> dict[str, Any]:
    """Put identifiers (phone numbers, BSUIDs) on the opt-out list, read as a
    recipients file reads them (``dispatcher suppress add``); returns how many were
    new and the ones that could not be read."""
    from dispatcher.audience import suppressions as book

    with _identifiers_file(identifiers) as file:
        added, rejects = book.add(db, file, reason, _region(region))
    return {"added": added, "rejected": _rejected(rejects, identifiers)}


def unsuppress(
    db: Database, identifiers: list[str], *, region: str | None = None
) -> dict[str, Any]:
    """Take identifiers off the opt-out list (``dispatcher suppress remove``)."""
    from dispatcher.audience import suppressions as book

    with _identifiers_file(identifiers) as file:
        removed, rejects = book.remove(db, file, _region(region))
    return {"removed": removed, "rejected": _rejected(rejects, identifiers)}


@contextlib.contextmanager
def _identifiers_file(identifiers: list[str]) -> Iterator[Path]:
    """The identifiers as a recipients CSV (a BSUID in the bsuid column, anything else
    in phone), for the loader every list goes through."""
    import tempfile

    from dispatcher.audience.recipients import classify_bsuid

    if not identifiers:
        raise Invalid("no identifiers", [{"field": "identifiers", "message": "none given"}])
    if len(identifiers) > MAX_IDENTIFIERS:
        raise Invalid(
            "too many identifiers",
            [{"field": "identifiers", "message": f"at most {MAX_IDENTIFIERS} in one call"}],
        )
    with tempfile.TemporaryDirectory(prefix="suppress-") as tmp:
        file = Path(tmp) / "identifiers.csv"
        with file.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["phone", "bsuid"])
            for identifier in identifiers:
                value = identifier.strip()
                bsuid, parent = classify_bsuid(value)
                writer.writerow(["", value] if bsuid or parent else [value, ""])
        yield file


def _region(region: str | None) -> str | None:
    if region is None or not region.strip():
        return None
    if len(region.strip()) != 2 or not region.strip().isalpha():
        raise Invalid(
            "bad region", [{"field": "region", "message": "an ISO country code (e.g. NO)"}]
        )
    return region.strip().upper()


def _rejected(rejects: list[Any], identifiers: list[str]) -> list[dict[str, Any]]:
    """Unreadable entries by their place in the request (line 2 of the CSV is the first)."""
    return [
        {"index": r.line - 2, "identifier": identifiers[r.line - 2], "reason": r.reason}
        if 0 <= r.line - 2 < len(identifiers)
        else {"index": None, "identifier": None, "reason": r.reason}
        for r in rejects
    ]


# -- schedules -----------------------------------------------------------------------------


def schedules(db: Database) -> list[dict[str, Any]]:
    """Every recurring campaign, its next run and how the last went."""
    with db.session() as session:
        return [_schedule(s) for s in session.scalars(select(Schedule).order_by(Schedule.id))]


def schedule(db: Database, schedule_id: int) -> dict[str, Any]:
    with db.session() as session:
        found = session.get(Schedule, schedule_id)
        if found is None:
            raise NotFound(f"no schedule {schedule_id}")
        return _schedule(found)


def add_schedule(
    db: Database,
    files: Mapping[str, bytes],
    cron: str,
    timezone: str = "UTC",
    *,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """A recurring campaign from uploaded files (``dispatcher schedule add``): kept
    under ``DROP_DIR/schedules/<uuid>`` (read afresh at each run, removed with the
    schedule), checked now by the same pre-flight. Bad files or a bad cron or zone
    raise ``Invalid`` naming the field."""
    from dispatcher.campaigns import schedules as recurring

    settings = settings or get_settings()
    unpacked = unpack(files)
    folder = settings.drop_dir / "schedules" / uuid.uuid4().hex
    hidden = folder.with_name("." + folder.name)
    try:
        hidden.mkdir(parents=True)
        write_files(hidden, unpacked)
        hidden.rename(folder)
        with db.session() as session:
            made = recurring.add(session, folder, cron, timezone, datetime.now(UTC))
            return _schedule(made)
    except CampaignSpecError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise Invalid("the campaign is not valid", _problems(exc, folder)) from None
    except ConfigurationError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        where = "timezone" if "time zone" in str(exc) else "cron"
        raise Invalid(str(exc), [{"field": where, "message": str(exc)}]) from None
    except StorageError as exc:  # the database, not the files: as submit says it
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"the schedule cannot be stored now: {exc}") from exc
    except DispatcherError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        message = _unstaged(str(exc), folder)
        raise Invalid(message, [{"field": "(file)", "message": message}]) from None
    except OSError as exc:  # DROP_DIR full, missing or not writable: the operator's to fix
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"the drop folder cannot keep the schedule's files now: {exc}") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(hidden, ignore_errors=True)


def remove_schedule(db: Database, schedule_id: int, *, settings: Settings | None = None) -> None:
    """Stop a recurring campaign (the campaigns it started stay); an uploaded folder
    kept for it goes too."""
    settings = settings or get_settings()
    with db.session() as session:
        found = session.get(Schedule, schedule_id)
        if found is None:
            raise NotFound(f"no schedule {schedule_id}")
        path = Path(found.path)
        session.delete(found)
    kept = (settings.drop_dir / "schedules").resolve()
    if path.parent == kept:
        shutil.rmtree(path, ignore_errors=True)


def _schedule(found: Schedule) -> dict[str, Any]:
    return _plain(
        {
            "id": found.id,
            "path": found.path,
            "cron": found.cron,
            "timezone": found.timezone,
            "enabled": found.enabled,
            "next_run_at": _iso(found.next_run_at) if found.enabled else None,
            "last_campaign_id": found.last_campaign_id,
            "last_error": found.last_error,
        }
    )


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC (SQLite hands times back without their zone: UTC)."""
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC).isoformat()
