"""Campaign preparation: resolve people, upload media once, write batches as they fill.

Runs in the ``prepare`` queue. The audience is read in two passes
(``dispatcher.audience.passes``): nobody can be messaged before every row is read, since the
last row may link two earlier ones. Once people are resolved the campaign is
``sending`` and batches are written in chunks of a few thousand messages; each chunk
commits, then its batches are handed to ``dispatch``, so the first requests go out
while later people are still being written. ``prepared_at`` marks the end; until
then a campaign cannot complete. A worker that dies half-way leaves the campaign
``sending`` without ``prepared_at``: the redelivered task hands out the batches
already written again (sending claims a batch once) and writes the people missing.
Rows merged into an earlier row of their person are stored last (``merged_rows``, once
per line however often this runs), for the outcome report.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Table, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.audience.passes import SUPPRESSED, Audience, Merged
from dispatcher.audience.recipients import Reject, normalise_header
from dispatcher.campaigns.compose import compose, content_key
from dispatcher.campaigns.message_spec import InvalidMessage
from dispatcher.campaigns.render import MissingValue
from dispatcher.campaigns.spec import CampaignSpec, LoadedCampaign
from dispatcher.db import (
    Batch,
    Campaign,
    CareWindow,
    Database,
    MergedRow,
    Message,
    Suppression,
)
from dispatcher.db.bulk import (
    copy_escape,
    copy_in,
    copy_text,
    insert_arrays,
    matching,
)
from dispatcher.errors import (
    CampaignSpecError,
    DispatcherError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.operations import control, progress
from dispatcher.operations.reports import write_rejects
from dispatcher.preparation.media import media_id_for, read_media
from dispatcher.providers import Level, Provider
from dispatcher.sending.windows import RECIPIENT, zone_of
from dispatcher.status import BatchState, CampaignState, MessageStatus

log = logging.getLogger(__name__)

# Seed 004 'Template message' / '24 hour customer care window'.
CARE_WINDOW = timedelta(hours=24)

#: Messages written per transaction; each commit hands its batches out.
CHUNK_MESSAGES = 10_000
#: Connections writing chunks at once (PostgreSQL).
WRITERS = 1
#: People waiting in partly filled groups before those groups are cut as they are.
OPEN_LIMIT = 20_000
#: Merged rows written per statement.
MERGED_CHUNK = 5_000
_COMPOSE_CACHE = 65_536

Dispatch = Callable[[list[str]], None]


def prepare_campaign(
    db: Database,
    client: Provider,
    campaign_id: int,
    *,
    reports_dir: Path | None,
    dispatch: Dispatch | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Prepare a campaign; returns the ids of the batches it wrote or found pending.

    ``dispatch`` receives batch ids as soon as they are committed. ``dry_run`` does
    everything but send: no provider call, stand-in media ids, the campaign ends
    ``previewed``. Idempotent: a prepared campaign just reports its pending batches.
    """
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise DispatcherError(f"campaign {campaign_id} does not exist")
        resuming = campaign.state == CampaignState.SENDING and campaign.prepared_at is None
        if campaign.state == CampaignState.SENDING and not resuming:
            pending = pending_batches(session, campaign_id)
            if dispatch is not None:
                dispatch(pending)  # a redelivered task: hand them out again (sent once)
            return pending
        if not resuming:
            # Conditional, so a cancel committed meanwhile is not overwritten; a campaign
            # not yet due (scheduled) or no longer wanted (cancelled, ...) stays as it is.
            moved = session.execute(
                update(Campaign)
                .where(
                    Campaign.id == campaign_id,
                    Campaign.state.in_((CampaignState.DRAFT, CampaignState.PREPARING)),
                )
                .values(state=CampaignState.PREPARING)
            ).rowcount  # type: ignore[attr-defined]
            if not moved:
                return []
        spec = CampaignSpec.model_validate(campaign.spec)
        loaded = LoadedCampaign(spec=spec, spec_path=Path(campaign.spec_path))
    try:
        return _prepare(
            db,
            client,
            campaign_id,
            loaded,
            reports_dir,
            dispatch,
            dry_run=dry_run,
            resuming=resuming,
        )
    except _Concurrent as exc:
        log.warning("campaign %s: another task is preparing it (%s)", campaign_id, exc)
        return []
    except DispatcherError as exc:
        log.warning("campaign %s cannot start: %s", campaign_id, exc)
        _fail(db, campaign_id, str(exc))
        return []
    except Exception as exc:
        # A bug or a lost connection half-way: say so on the campaign (it would wait
        # for ever otherwise, never ``prepared``), and let the task report it.
        _fail(db, campaign_id, f"preparation stopped: {type(exc).__name__}: {exc}")
        raise


def _fail(db: Database, campaign_id: int, error: str) -> None:
    with contextlib.suppress(DispatcherError), db.session() as session:
        failed = session.get(Campaign, campaign_id)
        if failed is not None and failed.state in (CampaignState.PREPARING, CampaignState.SENDING):
            failed.state = CampaignState.FAILED
            failed.error = error[:2000]
            failed.finished_at = datetime.now(UTC)


class _Concurrent(Exception):
    """Another delivery of the prepare task wrote the same batch or person first."""


def release_held(session: Session, now: datetime | None = None) -> list[str]:
    """Batches held by the messaging tier whose time has come: pending again (of
    campaigns still sending); returns their ids, to be handed to the send queue."""
    due = list(
        session.scalars(
            update(Batch)
            .where(
                Batch.state == BatchState.HELD,
                Batch.not_before <= (now or datetime.now(UTC)),
                Batch.campaign_id.in_(
                    select(Campaign.id).where(Campaign.state == CampaignState.SENDING)
                ),
            )
            .values(state=BatchState.PENDING)
            .returning(Batch.id)
        )
    )
    return sorted(due)


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
    client: Provider,
    campaign_id: int,
    loaded: LoadedCampaign,
    reports_dir: Path | None,
    dispatch: Dispatch | None,
    *,
    dry_run: bool,
    resuming: bool,
) -> list[str]:
    spec = loaded.spec
    if dry_run:
        checked = Preflight(spec.sender.level or Level.STANDARD)
        if checked.level is Level.UNKNOWN:
            checked.level = Level.STANDARD
    else:
        checked = _preflight(client, spec)
    for note in checked.notes:
        log.warning("campaign %s: %s", campaign_id, note)
    level = checked.level
    rate = max(1, level.messages_per_second * spec.sender.ceiling_percent // 100)
    with Audience(
        loaded.recipient_files(), spec.default_region, spec.columns.names(), spec.send_to
    ) as audience:
        _check_columns(loaded, audience)
        started = time.monotonic()
        with _bulk_mode():
            audience.scan()
        log.info("campaign %s: %d rows read, %d identifiers, %d rejected (%.1f s)", campaign_id,
                 audience.loaded, len(audience.graph), audience.rejected,
                 time.monotonic() - started)  # fmt: skip
        known = _lookups(db, campaign_id, spec, audience, resuming=resuming)
        log.info("campaign %s: identity book and opt-outs looked up (%.1f s)", campaign_id,
                 time.monotonic() - started)  # fmt: skip
        media_ids = _stand_in_media(loaded) if dry_run else _media_ids(db, client, loaded)
        audience.check_unchanged()  # before anyone is messaged, not half-way
        if not _start(db, campaign_id, level, rate, checked.notes, resuming=resuming,
                      dry_run=dry_run):  # fmt: skip
            return []  # stopped, or prepared by a concurrent delivery of this task
        with db.session() as session:
            room = _tier_room(session, spec, checked.tier_cap)
        written: list[str] = []
        if resuming and dispatch is not None:
            with db.session() as session:
                written = pending_batches(session, campaign_id)  # maybe never handed out
            dispatch(written)

        def committed(ids: list[str]) -> None:
            written.extend(ids)
            if dispatch is not None and not dry_run:
                dispatch([i for i in ids if i not in held])

        later: list[Reject] = []
        with _Committer(db, campaign_id, committed) as committer:
            writer = _Writer(
                campaign_id, min(spec.batch_size, rate), known.next_seq, committer.submit,
                room=room, cap=checked.tier_cap,
            )  # fmt: skip
            held = writer.held
            with _bulk_mode():
                for item in _members(spec, audience, known, media_ids):
                    if isinstance(item, Reject):
                        later.append(item)
                    else:
                        writer.add(*item)
                writer.close()
        elapsed = time.monotonic() - started
        log.info("campaign %s: %d messages in %d batches written (%.1f s)", campaign_id,
                 writer.messages, writer.seq - known.next_seq, elapsed)  # fmt: skip
        _record_merged(db, campaign_id, audience.merged())
        log.info("campaign %s: %d merged rows recorded (%.1f s)", campaign_id,
                 audience.duplicates, time.monotonic() - started)  # fmt: skip
        folder = (reports_dir or loaded.folder / "reports") / f"campaign-{campaign_id}"
        rejects_path = folder / "rejects.csv"
        rejected = write_rejects(rejects_path, audience.rejects(later), audience.columns)
        with db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is not None:
                campaign.loaded = audience.loaded
                campaign.rejected = rejected
                campaign.duplicates = audience.duplicates
                campaign.rejects_path = str(rejects_path)
                _finish(session, campaign, dry_run=dry_run)
    return written


_bulk_lock = threading.Lock()
_bulk_users = 0
_bulk_saved: tuple[bool, float] = (True, 0.005)


@contextmanager
def _bulk_mode() -> Iterator[None]:
    """Process settings for the passes over a big list, restored after the last user
    (preparations may overlap in a threaded worker):

    * no cyclic garbage collection: the passes make millions of short-lived objects
      and no reference cycles while the graph grows, and the collector would walk that
      whole heap again and again (a million rows: second pass 22 s with it, 6.4 s
      without);
    * a 0.5 ms thread switch interval: a writer thread woken by its socket otherwise
      waits up to 5 ms for the GIL per 128 kB of COPY data while this thread computes.
    """
    global _bulk_users, _bulk_saved
    with _bulk_lock:
        if _bulk_users == 0:
            _bulk_saved = (gc.isenabled(), sys.getswitchinterval())
            gc.disable()
            sys.setswitchinterval(0.0005)
        _bulk_users += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk_users -= 1
            if _bulk_users == 0:
                enabled, interval = _bulk_saved
                sys.setswitchinterval(interval)
                if enabled:
                    gc.enable()


@dataclass(slots=True)
class _Known:
    """What the database knows about the audience, looked up between the passes."""

    suppressed: bytearray  # by graph root (``Audience.marks``)
    windows: bytearray | None  # people with an open care window, when that matters
    already: bytearray  # people an interrupted preparation wrote
    next_seq: int


def _lookups(
    db: Database, campaign_id: int, spec: CampaignSpec, audience: Audience, *, resuming: bool
) -> _Known:
    with db.session() as session:
        audience.graph.link_book(book.lookup(session, audience.graph.number.keys()))
        everyone = audience.graph.number.keys()  # with the book's kin
        windows = None
        if _needs_window(spec):
            windows = audience.marks(_open_care_windows(session, everyone))
        already: set[str] = set()
        next_seq = 1
        if resuming:
            already, next_seq = _written(session, campaign_id)
        return _Known(
            suppressed=audience.marks(matching(session, Suppression.identifier, everyone)),
            windows=windows,
            already=audience.marks(already),
            next_seq=next_seq,
        )


def _start(
    db: Database,
    campaign_id: int,
    level: Level,
    rate: int,
    notes: list[str],
    *,
    resuming: bool,
    dry_run: bool,
) -> bool:
    """Record the level and open the campaign for sending; False when it is no longer
    ours to prepare (cancelled, or prepared by a concurrent delivery of the task)."""
    expected = CampaignState.SENDING if resuming else CampaignState.PREPARING
    with db.session() as session:
        # Notes made when it was registered (a repeat on a simulator) come first.
        earlier = session.scalar(select(Campaign.notes).where(Campaign.id == campaign_id)) or []
        notes = [*earlier, *(note for note in notes if note not in earlier)]
        # Conditional: of two deliveries of the prepare task, one moves the campaign on.
        # (Two resuming at once, a redelivery while the first still runs, are told
        # apart only by the unique keys when they write: the later one stops.)
        moved = session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.state == expected)
            .values(
                level=level.value,
                rate_per_second=rate,
                notes=notes or None,
                state=expected if dry_run else CampaignState.SENDING,
            )
        ).rowcount  # type: ignore[attr-defined]
    return bool(moved)


def _finish(session: Session, campaign: Campaign, *, dry_run: bool) -> None:
    campaign.prepared_at = datetime.now(UTC)
    if dry_run:
        campaign.state = CampaignState.PREVIEWED
        campaign.finished_at = campaign.prepared_at
    elif campaign.state == CampaignState.CANCELLED:
        # Cancelled while its people were being written: the ones written since close too.
        session.flush()
        control.settle_cancelled(session, campaign.id)
    elif campaign.state == CampaignState.SENDING:
        # Nobody to send to, or the first batches settled while later ones were
        # written (or before an interrupted preparation resumed): judged from the
        # messages themselves.
        session.flush()
        progress.complete_if_settled(session, campaign.id)


def _record_merged(db: Database, campaign_id: int, merged: Iterable[Merged]) -> None:
    """Store the rows merged into an earlier one, for the report. A preparation run
    again (resumed, or its task delivered twice) finds them stored: each line once."""
    postgres = db.engine.dialect.name == "postgresql"
    rows: list[dict[str, Any]] = []
    for row in merged:
        identifiers = list(row.identifiers)
        rows.append({"campaign_id": campaign_id, "file": row.file, "line": row.line,
                     "identifiers": _json_text(identifiers) if postgres else identifiers,
                     "kept_file": row.kept_file, "kept_line": row.kept_line,
                     "description": row.description})  # fmt: skip
        if len(rows) >= MERGED_CHUNK:
            _insert_merged(db, rows)
            rows = []
    _insert_merged(db, rows)


def _insert_merged(db: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        with db.session() as session:
            insert_arrays(session, _MERGED, rows, ignore_duplicates=True)


def _check_columns(loaded: LoadedCampaign, audience: Audience) -> None:
    """Every file has the columns the message and the spec name, before any work."""
    spec = loaded.spec
    needed = spec.placeholders() - set(spec.defaults)
    problems: list[tuple[str, str]] = []
    for index, columns in audience.headers():
        name = audience.files[index].name
        missing = sorted(needed - set(columns))
        if missing:
            problems.append((f"recipients[{index}]", f"{name} has no column {', '.join(missing)}"))
        for name_in_spec, column in spec.columns.named().items():
            if normalise_header(column) not in columns:
                problems.append((f"columns.{name_in_spec}", f"{name} has no column {column!r}"))
    if problems:
        raise CampaignSpecError(str(loaded.spec_path), problems)


def _needs_window(spec: CampaignSpec) -> bool:
    return not spec.is_template and spec.outside_care_window == "skip"


def _written(session: Session, campaign_id: int) -> tuple[set[str], int]:
    """Identifiers of the people an interrupted preparation already wrote, and the
    sequence number its next batch takes."""
    already: set[str] = set()
    for identifiers, destination in session.execute(
        select(Message.identifiers, Message.destination).where(Message.campaign_id == campaign_id)
    ):
        already.update(identifiers or [destination])
    last = session.scalar(select(func.max(Batch.seq)).where(Batch.campaign_id == campaign_id))
    return already, (last or 0) + 1


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
class Preflight:
    """What the provider says about the sender (``Provider.sender_info``)."""

    level: Level
    notes: list[str] = field(default_factory=list)
    tier_cap: int | None = None  # unique people per 24 h, when limited


def _preflight(client: Provider, spec: CampaignSpec) -> Preflight:
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
        return Preflight(level, [f"phone number information unavailable ({exc}): "
                                 f"assumed level {level.value}, tier not checked"])  # fmt: skip
    name = client.name
    if info.blocked is not None:
        reasons = info.blocked or "no reason given"
        raise CampaignSpecError("sender", [("sender.source", f"{name} reports BLOCKED: {reasons}")])
    result = Preflight(wanted or Level.STANDARD)
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


def _tier_room(session: Session, spec: CampaignSpec, cap: int | None) -> int | None:
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


def _media_ids(db: Database, client: Provider, loaded: LoadedCampaign) -> dict[str, str]:
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


def _open_care_windows(session: Session, identifiers: Collection[str]) -> set[str]:
    since = datetime.now(UTC) - CARE_WINDOW
    rows = matching(
        session,
        CareWindow.identifier,
        identifiers,
        CareWindow.identifier,
        CareWindow.last_incoming_at,
    )
    return {identifier for identifier, last in rows if _aware(last) >= since}


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone (they are stored in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stand_in_media(loaded: LoadedCampaign) -> dict[str, str]:
    """A preview uploads nothing: media refs get a recognisable stand-in id."""
    return {ref.file: "dry-run-media-id" for ref in loaded.media_refs()}


#: One message as the writer keeps it: identity key, destination, identifiers, CSV
#: line, and the JSON of the values the message used.
Member = tuple[str, str, list[str], int, str]


def _zone_prefix(spec: CampaignSpec) -> Callable[[str], str]:
    """With a sending window in each recipient's time zone, people of one zone share
    requests (a request is held or sent whole): the zone leads the grouping key."""
    window = spec.sending_window
    if window is None or window.time_zone != RECIPIENT:
        return lambda _: ""
    fallback = window.fallback_time_zone
    return lambda destination: f"{zone_of(destination, fallback)}\x1f"


def _members(
    spec: CampaignSpec, audience: Audience, known: _Known, media_ids: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any], Member] | Reject]:
    """Each person's message (its grouping key, the message, the member), or the
    reason the person is left out.

    * authentication templates never go to a BSUID (seed 004 'BSUID Limitations',
      Meta error 131062): such people are sent to their phone number, or not at all;
    * a non-template message needs an open customer care window: a message from the
      person within 24 h (unless the spec says ``outside_care_window: send``).

    Composing validates the whole message (about 40 us), so it is done once per
    distinct set of values the message uses, not once per person. A million people
    pass through here: nothing is built that the writer does not keep.
    """
    used = sorted(spec.placeholders() | set(spec.defaults))
    authentication = spec.authentication
    suppressed, windows, already = known.suppressed, known.windows, known.already
    positions: dict[Path, list[int | None]] = {}  # per file: where each used column is
    zone_prefix = _zone_prefix(spec)

    @lru_cache(maxsize=_COMPOSE_CACHE)
    def composed(values: tuple[str, ...]) -> tuple[str, dict[str, Any], str] | str:
        named = dict(zip(used, values, strict=True))
        try:
            message = compose(spec, named, media_ids)
        except MissingValue as exc:
            return f"missing value for '{exc.column}'"
        except InvalidMessage as exc:
            return f"the message for this row is invalid: {exc}"
        return content_key(message), message, _json_text(named)

    for root, recipients, line, cells in audience.firsts():
        if already[root]:
            continue
        if suppressed[root]:
            yield Reject(recipients.path, line, SUPPRESSED, recipients.values(cells))
            continue
        if windows is not None and not windows[root]:
            yield Reject(recipients.path, line, "outside the 24-hour customer care window "
                         "(no message from this person in the last 24 h)",
                         recipients.values(cells))  # fmt: skip
            continue
        identity = audience.identity(root, phones_only=authentication)
        if identity is None:
            yield Reject(recipients.path, line, "authentication templates cannot be sent to a "
                         "BSUID (Meta error 131062) and no phone number is known",
                         recipients.values(cells))  # fmt: skip
            continue
        where = positions.get(recipients.path)
        if where is None:
            where = positions[recipients.path] = [
                recipients.columns.index(c) if c in recipients.columns else None for c in used
            ]
        values = tuple("" if i is None else cells[i] for i in where)
        result = composed(values)
        if isinstance(result, str):
            yield Reject(recipients.path, line, result, recipients.values(cells))
            continue
        key, message, params = result
        yield zone_prefix(identity[1]) + key, message, (*identity, line, params)


@dataclass(slots=True)
class _Batch:
    id: str
    seq: int
    payload: dict[str, Any]
    members: list[Member]
    not_before: datetime | None = None  # held by the messaging tier until then


class _Writer:
    """Groups people with identical messages into batches, committing in chunks.

    A group is cut when it holds ``batch_size`` people. Groups that stay small (a
    personalised message makes every person a group of one) are cut as they are once
    ``OPEN_LIMIT`` people wait, so memory stays bounded.

    The messaging tier: once ``room`` people are in batches, later batches are held,
    the next ``cap`` people for 24 hours, the next for 48, and so on (``held`` names
    them; a periodic task releases them, ``release_held``).
    """

    def __init__(
        self,
        campaign_id: int,
        batch_size: int,
        next_seq: int,
        commit: Callable[[list[_Batch]], None],
        *,
        room: int | None = None,
        cap: int | None = None,
    ) -> None:
        self.campaign_id = campaign_id
        self.batch_size = batch_size
        self.seq = next_seq
        self.commit = commit
        self.room = room
        self.cap = cap or 1
        self.started = datetime.now(UTC)
        self.held: set[str] = set()
        self.messages = 0
        self._cut_people = 0
        self._groups: dict[str, tuple[dict[str, Any], list[Member]]] = {}
        self._waiting = 0
        self._ready: list[_Batch] = []
        self._ready_messages = 0

    def add(self, key: str, message: dict[str, Any], member: Member) -> None:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = (message, [])
        group[1].append(member)
        self._waiting += 1
        self.messages += 1
        if len(group[1]) >= self.batch_size:
            self._cut(key)
        elif self._waiting >= OPEN_LIMIT:
            for waiting in list(self._groups):
                self._cut(waiting)
        if self._ready_messages >= CHUNK_MESSAGES:
            self._flush()

    def close(self) -> None:
        for key in list(self._groups):
            self._cut(key)
        self._flush()

    def _cut(self, key: str) -> None:
        message, members = self._groups.pop(key)
        batch_id = f"c{self.campaign_id}-b{self.seq:06d}"
        not_before = None
        if self.room is not None and self._cut_people + len(members) > self.room:
            days = 1 + max(0, self._cut_people - self.room) // self.cap
            not_before = self.started + days * TIER_PERIOD
            self.held.add(batch_id)
        self._cut_people += len(members)
        self._ready.append(_Batch(batch_id, self.seq, {"messages": [message]}, members, not_before))
        self.seq += 1
        self._waiting -= len(members)
        self._ready_messages += len(members)

    def _flush(self) -> None:
        if self._ready:
            self.commit(self._ready)
        self._ready = []
        self._ready_messages = 0


class _Committer:
    """Writes chunks on threads of their own while the caller composes the next ones.

    Most of a chunk's cost is PostgreSQL's (a random insert into the unique index per
    message): the driver waits without the GIL, so the server works on the other core
    while this thread formats the next rows. (Two connections were no faster on two
    cores.) At most ``WRITERS + 1`` chunks are in flight; ``on_written`` runs on the
    caller's thread, in order, once a chunk has committed.
    """

    def __init__(
        self, db: Database, campaign_id: int, on_written: Callable[[list[str]], None]
    ) -> None:
        self.db = db
        self.campaign_id = campaign_id
        self.on_written = on_written
        self._postgres = db.engine.dialect.name == "postgresql"
        writers = WRITERS if self._postgres else 1  # SQLite has one writer anyway
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="prepare-writer")
        self._in_flight = writers + 1
        self._pending: deque[Future[list[str]]] = deque()

    def submit(self, batches: list[_Batch]) -> None:
        chunk = _chunk(self._postgres, self.campaign_id, batches)
        while len(self._pending) >= self._in_flight:
            self.on_written(self._pending.popleft().result())
        self._pending.append(self._pool.submit(_insert, self.db, chunk))

    def __enter__(self) -> _Committer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            while self._pending:
                ids = self._pending.popleft().result()
                if kind is None:
                    self.on_written(ids)
        finally:
            self._pool.shutdown(wait=True)


_BATCHES: Table = Batch.__table__  # type: ignore[assignment]
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_MERGED: Table = MergedRow.__table__  # type: ignore[assignment]
_BATCH_COLUMNS = (
    "id", "campaign_id", "seq", "state", "payload", "size", "attempts", "created_at",
    "not_before",
)  # fmt: skip
_MESSAGE_COLUMNS = (
    "campaign_id", "identity_key", "destination", "identifiers", "source_line", "params",
    "batch_id", "position", "status", "attempts", "updated_at",
)  # fmt: skip


@dataclass(slots=True)
class _Chunk:
    """Rows of one transaction, formatted for the database on the caller's thread
    (Python work holds the GIL either way), so the writer thread only waits on I/O."""

    batch_ids: list[str]
    batch_rows: list[tuple[Any, ...]]
    messages: str | list[dict[str, Any]]  # COPY text (PostgreSQL) or rows (SQLite)


def _chunk(postgres: bool, campaign_id: int, batches: list[_Batch]) -> _Chunk:
    now = datetime.now(UTC)
    batch_rows = [
        (batch.id, campaign_id, batch.seq,
         (BatchState.PENDING if batch.not_before is None else BatchState.HELD).value,
         _json_text(batch.payload) if postgres else batch.payload, len(batch.members), 0, now,
         batch.not_before)
        for batch in batches
    ]  # fmt: skip
    messages: str | list[dict[str, Any]]
    if postgres:
        messages = _message_lines(campaign_id, batches, now)
    else:
        messages = [
            dict(zip(_MESSAGE_COLUMNS, (campaign_id, key, destination, identifiers, line,
                 json.loads(params), batch.id, position, MessageStatus.QUEUED.value, 0, now),
                 strict=True))
            for batch in batches
            for position, (key, destination, identifiers, line, params) in enumerate(batch.members)
        ]  # fmt: skip
    return _Chunk([batch.id for batch in batches], batch_rows, messages)


def _insert(db: Database, chunk: _Chunk) -> list[str]:
    """Write a chunk's batches and messages in one transaction; returns the batch ids.

    PostgreSQL takes them by ``COPY``, SQLite by executemany.
    """
    try:
        with db.session() as session:
            if isinstance(chunk.messages, str):
                # Not waiting for the WAL flush is safe here: a batch lost in a crash
                # was never claimed (a claim's own commit flushes everything before
                # it), and the resumed preparation writes its people again.
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                copy_in(session, _BATCHES, _BATCH_COLUMNS, chunk.batch_rows)
                copy_text(session, _MESSAGES, _MESSAGE_COLUMNS, chunk.messages)
            else:
                batch_rows = [dict(zip(_BATCH_COLUMNS, r, strict=True)) for r in chunk.batch_rows]
                insert_arrays(session, _BATCHES, batch_rows)
                insert_arrays(session, _MESSAGES, chunk.messages)
    except (IntegrityError, psycopg.IntegrityError) as exc:
        if not _duplicate(exc):
            raise
        # A concurrent delivery of this task wrote the same batch or person first.
        raise _Concurrent(str(exc)) from exc
    return chunk.batch_ids


def _message_lines(campaign_id: int, batches: list[_Batch], now: datetime) -> str:
    """``COPY`` text of the messages, built directly: a million rows go through here.

    Identifiers (and so identity keys) are validated E.164 numbers and BSUIDs
    (``[+.0-9A-Za-z]``): safe inside JSON and COPY text as they are. Only the values
    from the CSV need escaping.
    """
    tail = f"\t{MessageStatus.QUEUED.value}\t0\t{now.isoformat()}"
    lines: list[str] = []
    append = lines.append
    for batch in batches:
        batch_id = batch.id
        for position, (key, destination, ids, line, params) in enumerate(batch.members):
            identifiers = '["' + '","'.join(ids) + '"]'
            append(f"{campaign_id}\t{key}\t{destination}\t{identifiers}\t{line}\t"
                   f"{copy_escape(params)}\t{batch_id}\t{position}{tail}")  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def _duplicate(exc: Exception) -> bool:
    """A unique key violated (PostgreSQL SQLSTATE 23505, SQLite's message)."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint" in str(orig)


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json_text(value: Any) -> str:
    """JSON columns go to ``COPY`` as their text."""
    return _encoder.encode(value)


def _same(value: Any) -> Any:
    return value
