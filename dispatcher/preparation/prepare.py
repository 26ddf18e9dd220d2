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

This module runs the steps in order; the steps live beside it: ``sender_checks``
(level, BLOCKED/LIMITED, messaging tier), ``media`` (uploads), ``batching`` (who gets
which message, grouped into batches) and ``inserts`` (writing the batches).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.audience.passes import Audience
from dispatcher.audience.recipients import Reject, normalise_header
from dispatcher.campaigns import inputs, lifecycle
from dispatcher.campaigns.spec import CampaignSpec, LoadedCampaign, TemplateCategory
from dispatcher.db import Batch, Campaign, Database, Message, RetiredIdentity, Suppression
from dispatcher.db.bulk import matching
from dispatcher.db.timestamps import aware
from dispatcher.errors import CampaignSpecError, DispatcherError
from dispatcher.guardrails import canary, caps
from dispatcher.guardrails.policy import Canary
from dispatcher.operations import control
from dispatcher.operations.reports import write_rejects
from dispatcher.preparation import media
from dispatcher.preparation.batching import Known, Writer, members
from dispatcher.preparation.inserts import Committer, Concurrent, record_merged
from dispatcher.preparation.sender_checks import (
    SenderCheck,
    check_sender,
    check_template,
    tier_room,
)
from dispatcher.providers import Level, Provider
from dispatcher.sending import batch_states, care_window
from dispatcher.settings import get_settings
from dispatcher.status import BatchState, CampaignState

log = logging.getLogger(__name__)


class Dispatch(Protocol):
    """Queues batches for sending. ``fresh``: this preparation wrote them just now, so
    their ``created_at`` stands for when they were handed out (the lost-task net reads
    either), and they need no stamp of their own."""

    def __call__(self, batch_ids: list[str], *, fresh: bool = False) -> None: ...


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
        if not resuming and not lifecycle.start_preparing(session, campaign_id):
            return []  # cancelled meanwhile, not yet due, or another task's
        spec = CampaignSpec.model_validate(campaign.spec)
        loaded = LoadedCampaign(spec=spec, spec_path=Path(campaign.spec_path))
    try:
        with inputs.materialized(db, campaign_id, loaded) as fetched:
            return _prepare(
                db,
                client,
                campaign_id,
                fetched,
                reports_dir,
                dispatch,
                dry_run=dry_run,
                resuming=resuming,
            )
    except Concurrent as exc:
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


def _authentication(db: Database, campaign_id: int, spec: CampaignSpec) -> CampaignSpec:
    """The provider lists the template as AUTHENTICATION: so it is, whatever the spec
    says (seed 004 'BSUID Limitations': such templates cannot go to a BSUID). Stored, so
    the send path and resends see it too."""
    category = TemplateCategory.AUTHENTICATION
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            campaign.spec = {**campaign.spec, "template_category": category.value}
    return spec.model_copy(update={"template_category": category})


def _fail(db: Database, campaign_id: int, error: str) -> None:
    with contextlib.suppress(DispatcherError), db.session() as session:
        lifecycle.fail(session, campaign_id, error)


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
        checked = SenderCheck(spec.sender.level or Level.STANDARD)
        if checked.level is Level.UNKNOWN:
            checked.level = Level.STANDARD
    else:
        checked = check_sender(client, spec)
        template = check_template(client, spec, checked.notes)
        if template is not None and template.authentication and not spec.authentication:
            spec = _authentication(db, campaign_id, spec)
        spec = caps.store_category(db, campaign_id, spec, template)
    for note in checked.notes:
        log.warning("campaign %s: %s", campaign_id, note)
    level = checked.level
    rate = checked.rate(spec.sender.ceiling_percent)
    with (
        Audience(
            loaded.recipient_files(), spec.default_region, spec.columns.names(), spec.send_to
        ) as audience,
        contextlib.ExitStack() as capping,
    ):
        _check_columns(loaded, audience)
        started = time.monotonic()
        with _bulk_mode():
            audience.scan()
        log.info("campaign %s: %d rows read, %d identifiers, %d rejected (%.1f s)", campaign_id,
                 audience.loaded, len(audience.graph), audience.rejected,
                 time.monotonic() - started)  # fmt: skip
        portfolio = get_settings().portfolio_name(spec.sender.source)
        known = _lookups(db, campaign_id, spec, audience, portfolio, resuming=resuming)
        known.capped = _capped(db, campaign_id, spec, audience, capping, dry_run=dry_run)
        log.info("campaign %s: identity book and opt-outs looked up (%.1f s)", campaign_id,
                 time.monotonic() - started)  # fmt: skip
        media_ids = (
            media.stand_in_media(loaded)
            if dry_run
            else media.media_ids(db, client, loaded, notes=checked.notes)
        )
        audience.check_unchanged()  # before anyone is messaged, not half-way
        # Of two deliveries of this task, one opens the campaign. (Two resuming at once,
        # a redelivery while the first still runs, are told apart only by the unique
        # keys when they write: the later one stops.)
        with db.session() as session:
            opened = lifecycle.open_for_sending(session, campaign_id, level=level, rate=rate,
                                                notes=checked.notes, resuming=resuming,
                                                dry_run=dry_run)  # fmt: skip
        if not opened:
            return []  # stopped, or prepared by a concurrent delivery of this task
        with db.session() as session:
            senders = get_settings().portfolio_of(spec.sender.source)
            room = tier_room(session, spec, checked.tier_cap, senders)
        written: list[str] = []
        if resuming and dispatch is not None:
            with db.session() as session:
                written = pending_batches(session, campaign_id)  # maybe never handed out
            dispatch(written)

        def committed(ids: list[str], *, fresh: bool = True) -> None:
            written.extend(ids)
            if ids and dispatch is not None and not dry_run:
                dispatch([i for i in ids if i not in held and i not in waiting], fresh=fresh)

        canary_policy, canary_people = _canary(db, campaign_id, spec, audience, dry_run=dry_run)
        canary_started = datetime.now(UTC)

        later: list[Reject] = []
        with Committer(db, campaign_id, committed) as committer:
            writer = Writer(
                campaign_id, min(spec.people_per_request, rate), known.next_seq, committer.submit,
                room=room, cap=checked.tier_cap, level=rate, canary=canary_people,
            )  # fmt: skip
            held, waiting = writer.held, writer.waiting
            with _bulk_mode():
                for item in members(spec, audience, known, media_ids):
                    if isinstance(item, Reject):
                        later.append(item)
                    else:
                        writer.add(*item)
                writer.close()
        capping.close()
        caps.write_skipped(db, campaign_id, known.over_cap)
        elapsed = time.monotonic() - started
        log.info("campaign %s: %d messages in %d batches written (%.1f s)", campaign_id,
                 writer.messages, writer.seq - known.next_seq, elapsed)  # fmt: skip
        # Released from the canary's wait: a resumed run's may be hours old, so stamped.
        committed(
            _store_canary(db, campaign_id, canary_policy, writer, known.next_seq, canary_started),
            fresh=False,
        )
        record_merged(db, campaign_id, audience.merged())
        log.info("campaign %s: %d merged rows recorded (%.1f s)", campaign_id,
                 audience.duplicates, time.monotonic() - started)  # fmt: skip
        learned = 0 if dry_run else _learn_rows(db, campaign_id, audience, portfolio, known.retired)
        log.info("campaign %s: %d rows taught the identity book (%.1f s)", campaign_id,
                 learned, time.monotonic() - started)  # fmt: skip
        # Stored for every host; also written to REPORTS_DIR, else to the campaign
        # folder when this host has it (a worker elsewhere has only the stored copy).
        local = reports_dir or (loaded.folder / "reports" if loaded.folder.is_dir() else None)
        with tempfile.TemporaryDirectory() as tmp:
            folder = local / f"campaign-{campaign_id}" if local else Path(tmp)
            rejects_path = folder / inputs.REJECTS
            rejected = write_rejects(rejects_path, audience.rejects(later), audience.columns)
            with db.session() as session:
                inputs.store_report(session, campaign_id, inputs.REJECTS, rejects_path)
                campaign = session.get(Campaign, campaign_id)
                if campaign is not None:
                    campaign.loaded = audience.loaded
                    campaign.rejected = rejected
                    campaign.duplicates = audience.duplicates
                    campaign.rejects_path = str(rejects_path) if local else None
                    _finish(session, campaign, dry_run=dry_run)
    return written


def _canary(
    db: Database, campaign_id: int, spec: CampaignSpec, audience: Audience, *, dry_run: bool
) -> tuple[Canary | None, int | None]:
    """The campaign's canary and how many people it takes (``Writer``'s ``canary``):
    its share of the people read (rows less those refused: merged rows still count, so
    a list with many repeats gets a slightly larger canary). A preparation resumed
    after its canary was stored writes every person left as waiting (0). None for a
    dry run or without a canary."""
    policy = spec.canary or get_settings().canary
    if policy is None or dry_run:
        return None, None
    with db.session() as session:
        stored = session.scalar(select(Campaign.canary).where(Campaign.id == campaign_id))
    if stored:
        return None, 0
    return policy, canary.size(policy, max(0, audience.loaded - audience.rejected))


def _store_canary(db: Database, campaign_id: int, policy: Canary | None, writer: Writer,
                  first_seq: int, started: datetime) -> list[str]:  # fmt: skip
    """The canary's plan, once its batches and the waiting ones are written. A resumed
    preparation with nobody left to write, whose first run stopped before it stored
    the plan, has no canary to judge its waiting batches: they are released (returned
    for the send queue) rather than left waiting for ever."""
    if policy is None:
        return []
    if not writer.canary_people:
        with db.session() as session:
            return batch_states.release_waiting(session, campaign_id, datetime.now(UTC))
    last = writer.canary_last_seq if writer.canary_last_seq is not None else writer.seq - 1
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            planned = canary.plan(
                policy, people=writer.canary_people, held=writer.messages - writer.canary_people,
                first_seq=first_seq, last_seq=last, started=started,
            )  # fmt: skip
            campaign.canary = canary.located(session, campaign_id, planned)
    return []


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


def _lookups(
    db: Database,
    campaign_id: int,
    spec: CampaignSpec,
    audience: Audience,
    portfolio: str,
    *,
    resuming: bool,
) -> Known:
    with db.session() as session:
        listed = list(audience.graph.number)
        held = book.scoped(session, listed)
        audience.graph.link_book({i: key for i, (key, _) in held.items()})
        _bar_other_portfolios(audience, held, portfolio)
        retired = _resolve_retired(
            session, audience, [i for i in listed if i not in held], portfolio
        )
        everyone = audience.graph.number.keys()  # with the book's kin
        windows = None
        if care_window.needs_window(spec):
            # Looked at again as each request leaves (``sending.care_window``).
            windows = audience.marks(
                care_window.open_windows(session, spec.sender.source, everyone)
            )
        already: set[str] = set()
        next_seq = 1
        if resuming:
            already, next_seq = _written(session, campaign_id)
        return Known(
            suppressed=audience.marks(matching(session, Suppression.identifier, everyone)),
            windows=windows,
            already=audience.marks(already),
            next_seq=next_seq,
            retired=retired,
        )


def _capped(
    db: Database,
    campaign_id: int,
    spec: CampaignSpec,
    audience: Audience,
    lock: contextlib.ExitStack,
    *,
    dry_run: bool,
) -> dict[int, str] | None:
    """The people (graph roots, every identifier of theirs counted) at the frequency cap,
    and their skipped message's description (``guardrails.caps``); None without a cap.
    Sending, the portfolio's lock is taken into ``lock``: held until this campaign's
    messages are written, so the portfolio's next campaign counts them."""
    settings = get_settings()
    cap = caps.effective(spec, settings) if caps.marketing(spec) else None
    if cap is None:
        return None
    if not dry_run:
        lock.enter_context(caps.exclusive(db, settings.portfolio_name(spec.sender.source)))
    number, find = audience.graph.number, audience.graph.find
    person_of = {identifier: find(n) for identifier, n in number.items()}
    senders = settings.portfolio_of(spec.sender.source)
    with db.session() as session:
        over = caps.over_cap(session, cap, senders, person_of, datetime.now(UTC), campaign_id)
    if over:
        log.info("campaign %s: %d people at the frequency cap", campaign_id, len(over))
    return {root: caps.describe(cap, found) for root, found in over.items()}


def _bar_other_portfolios(
    audience: Audience, held: dict[str, tuple[str, str]], portfolio: str
) -> None:
    """A BSUID learned through another business portfolio is never a destination (seed
    004 'BSUID Limitations': "cannot be used to communicate with the same user through
    another business portfolio"); it still names its person. Links from before the
    book kept portfolios ('') are not judged."""
    bar = audience.graph.bar
    for identifier, (_, theirs) in held.items():
        if theirs and theirs != portfolio and identifier[0] != "+":
            bar(identifier, f"known only by a BSUID of another business portfolio ({theirs}; "
                            f"this sender's is {portfolio})")  # fmt: skip


def _resolve_retired(
    session: Session, audience: Audience, unheld: list[str], portfolio: str
) -> frozenset[str]:
    """Identifiers of the list the book holds no more because a change retired them
    (returned):

    * a retired BSUID is its person's still (BSUIDs are never given to anyone else):
      it joins the person's current identifiers (those of another portfolio barred as
      ever) and is never the destination;
    * a retired number may be somebody else's now: it is nobody's in particular,
      unless the list itself links it to the person it was retired from (a stale row),
      and then it is not sent to either.
    """
    rows = list(matching(session, RetiredIdentity.identifier, unheld, *_RETIRED))
    if not rows:
        return frozenset()
    current = book.scoped(session, {row[1] for row in rows})
    kin: dict[str, dict[str, str]] = {}
    for identifier, (key, _) in current.items():
        kin.setdefault(key, {})[identifier] = key
    graph = audience.graph
    numbers: list[tuple[str, str, str]] = []
    for identifier, key, when, why in rows:
        person = current[key][0] if key in current else None
        said = f"retired on {aware(when):%Y-%m-%d} ({why})"
        if identifier[0] == "+":
            if person is not None:
                numbers.append((identifier, person, said))
            continue
        if person is not None:
            graph.link_book({identifier: person, **kin[person]})
        graph.bar(identifier, f"known only by a retired BSUID ({said})")
    _bar_other_portfolios(audience, current, portfolio)
    for identifier, person, said in numbers:
        if graph.of_book_person(identifier, person):
            graph.bar(identifier, f"its number was {said} and no current one is known")
    return frozenset(row[0] for row in rows)


_RETIRED = (RetiredIdentity.identifier, RetiredIdentity.person_key, RetiredIdentity.retired_at,
            RetiredIdentity.retired_by)  # fmt: skip
_LEARN_CHUNK = 20_000


def _learn_rows(
    db: Database, campaign_id: int, audience: Audience, portfolio: str, retired: frozenset[str]
) -> int:
    """The list's rows that name several identifiers teach the identity book (source
    "campaign N line L"; its BSUIDs in the sender's portfolio), leaving out identifiers a
    change retired (a stale list must not bring an old link back). After the messages
    are written: sending does not wait for it. Returns how many changed the book."""
    learned = 0
    rows = audience.linking_rows()
    while part := list(itertools.islice(rows, _LEARN_CHUNK)):
        chunk = [
            (
                kept,
                book.Source("csv", f"campaign {campaign_id} {name} line {line}", None, portfolio),
            )
            for name, line, ids in part
            if len(kept := [i for i in ids if i not in retired]) > 1
        ]
        with db.session() as session:
            learned += book.learn_links(session, chunk)
    return learned


def _finish(session: Session, campaign: Campaign, *, dry_run: bool) -> None:
    now = datetime.now(UTC)
    if dry_run and lifecycle.previewed(session, campaign.id, now):
        return  # else: cancelled meanwhile, closed below like any campaign
    campaign.prepared_at = now
    if campaign.state == CampaignState.CANCELLED:
        # Cancelled while its people were being written: the ones written since close too.
        session.flush()
        control.close_cancelled(session, campaign.id)
    elif campaign.state == CampaignState.SENDING:
        # Nobody to send to, or the first batches settled while later ones were
        # written (or before an interrupted preparation resumed): judged from the
        # messages themselves.
        session.flush()
        lifecycle.complete_if_settled(session, campaign.id)


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
