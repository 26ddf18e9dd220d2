"""Many batches in one task: capacity per slice, bulk claims, requests in flight at once.

A personalised campaign is one request per person: a thousand requests a second at
HIGH. One blocking request per task cannot get there (four processes at 50 ms a
request make 80 a second), so a task takes a chunk of batches and, slice by slice:

1. claims the slice in one transaction, committed before any request leaves, with the
   same crash rule as ``sending.send_batch``: a batch this task delivery finds already
   claimed by itself was in flight when its worker died, and goes ``in_doubt``;
2. reserves the slice's requests in the sender's limiter at once, each counted at the
   moment it will leave (so no 1-second window can exceed the level);
3. sends the slice's requests concurrently (the provider's ``SliceSender``: for LINK,
   aiohttp with pooled connections), spread evenly over the slice's share of the
   second as the limiter paced it;
4. records the answers in one transaction.

Requests that found the provider unreachable are handed back (``Outcome.RETRY``) for the
single-batch task and its backoff to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.db.bulk import among, update_by_id
from dispatcher.errors import (
    LinkAuthError,
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
    StorageError,
)
from dispatcher.operations import control
from dispatcher.providers import Answer, Level, Priority, Provider, Request, SliceSender
from dispatcher.sending.batch import (
    Outcome,
    SendContext,
    _fail_campaign_of,
    _reject,
    apply_waiting,
    submitted,
    valid_until,
)
from dispatcher.sending.throttle import Grant
from dispatcher.sending.windows import hold_closed
from dispatcher.status import BatchState, CampaignState, MessageStatus

log = logging.getLogger(__name__)

#: Batches one task takes (a second of a personalised campaign at HIGH).
CHUNK_BATCHES = 100
#: Requests in flight at once per process.
MAX_IN_FLIGHT = 100
#: A slice is at most this share of a second of the level.
SLICES_PER_SECOND = 10
#: Campaign specs a process keeps parsed.
SPECS_KEPT = 64
#: How far ahead of its slot a slice may be claimed.
CLAIM_AHEAD_SECONDS = 2.0
#: How long before a slice's slot its campaigns' states are looked at a last time.
LAST_LOOK_SECONDS = 0.025
#: The share of the limiter's margin a request may spend late on this side before it
#: gives up its slot; the rest is for its way to the provider, which is less steady.
LATE_SHARE = 1 / 3
#: Fresh slots taken when this process reached its slot too late, before it sends anyway.
LATE_RETRIES = 5


#: Broker priority of a campaign's send tasks (Redis: 0 is served first), from the
#: priority its requests carry. Between campaigns that share a sender this is
#: the rule: HIGH before NORMAL before LOW, first come first served within one; the
#: sender's limiter holds their sum at the level whoever sends.
QUEUE_PRIORITY = {Priority.HIGH: 0, Priority.NORMAL: 3, Priority.LOW: 6}


def queue_priority(db: Database, campaign_id: int) -> int:
    """The broker priority of a stored campaign's send tasks."""
    with db.session() as session:
        spec = session.scalar(select(Campaign.spec).where(Campaign.id == campaign_id))
    priority = Priority((spec or {}).get("priority") or Priority.NORMAL)
    return QUEUE_PRIORITY.get(priority, QUEUE_PRIORITY[Priority.NORMAL])


class Fanout:
    """A worker process's event loop and the provider's slice sender, kept between tasks."""

    def __init__(self, client: Provider, max_connections: int = MAX_IN_FLIGHT) -> None:
        self._loop = asyncio.new_event_loop()
        self._sender: SliceSender = client.concurrent(max_connections)
        self._specs: dict[int, CampaignSpec] = {}
        self.windowed = False  # some campaign seen has a sending window

    def spec(self, session: Session, campaign_id: int) -> CampaignSpec:
        """A campaign's spec, read and validated once per process: it never changes
        after the campaign is created, and a slice would otherwise parse it per batch."""
        spec = self._specs.get(campaign_id)
        if spec is None:
            if len(self._specs) >= SPECS_KEPT:
                self._specs.clear()
            raw = session.scalar(select(Campaign.spec).where(Campaign.id == campaign_id))
            spec = self._specs[campaign_id] = CampaignSpec.model_validate(raw)
        self.windowed = self.windowed or spec.sending_window is not None
        return spec

    def send_all(
        self,
        requests: Sequence[Request],
        moments: list[float],
        late_after: float | None = None,
    ) -> list[Answer | LinkError | Late]:
        """Post the requests concurrently, each at its moment in its grant (``dues``):
        a slice goes out as the even stream the limiter granted, not as one burst.

        A request that could only leave more than ``late_after`` seconds after its time
        (this process was stopped or starved meanwhile) does not leave: it is ``Late``.
        Sent anyway, the stragglers of a stall go out together with the next slots'
        requests, and that second at the provider carries more than the level.
        """
        return self._loop.run_until_complete(self._all(requests, moments, late_after))

    async def _all(
        self, requests: Sequence[Request], dues: list[float], late_after: float | None
    ) -> list[Answer | LinkError | Late]:
        paced = (self._paced(r, due, late_after) for r, due in zip(requests, dues, strict=True))
        return list(await asyncio.gather(*paced))

    async def _paced(
        self, request: Request, due: float, late_after: float | None
    ) -> Answer | LinkError | Late:
        ahead = due - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        if late_after is not None and time.monotonic() - due > late_after:
            return Late()
        try:
            return await self._sender.send(request)
        except LinkError as exc:
            return exc

    def close(self) -> None:
        self._loop.run_until_complete(self._sender.aclose())
        self._loop.close()


def dues(grant: Grant, requests: Sequence[Request]) -> list[float]:
    """When each request of a grant leaves: request ``i`` at the grant's start plus the
    messages before it times the grant's spacing, as the limiter counted them."""
    moments, before = [], 0
    for request in requests:
        moments.append(grant.starts + before * grant.spacing)
        before += weight_of(request)
    return moments


class Late:
    """A request that missed its slot and was kept back (``Fanout.send_all``)."""


def weight_of(request: Request) -> int:
    """What a request costs in the limiter: Meta counts every message."""
    return len(request.destinations) * len(request.messages)


@dataclass(slots=True)
class _Claimed:
    request: Request
    validity: timedelta
    message_ids: list[int]  # in the order of the request's destinations
    campaign_id: int


@dataclass(slots=True)
class _Sender:
    source: str
    rate: int
    batches: list[tuple[str, int]] = field(default_factory=list)  # (batch id, weight)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # read once, by _peek


def send_many(
    ctx: SendContext, fanout: Fanout, batch_ids: Sequence[str], claimer: str
) -> dict[str, Outcome]:
    """Send a chunk of batches; returns each batch's outcome."""
    outcomes: dict[str, Outcome] = {}
    for sender in _peek(ctx, fanout, batch_ids, claimer, outcomes):
        for part in _slices(sender.batches, sender.rate):
            part = _still_in_window(ctx, fanout, part, outcomes)
            if not part:
                continue
            ids = [batch_id for batch_id, _ in part]
            claimed: dict[str, _Claimed] = {}
            try:
                # Claim, then reserve: a slot taken first could come round while the
                # claim still runs, and a slot missed is a hole in the sender's stream.
                # But not far ahead: a batch claimed is in doubt if its worker dies.
                _until_the_queue_is_short(ctx, sender.source)
                claimed = _claim(ctx, fanout, sender, ids, claimer, outcomes)
                if not claimed:
                    continue
                grant = _reserve(ctx, sender, claimed, list(claimed))
            except StorageError as exc:
                log.warning("batches of %s: %s", sender.source[:4], exc)
                # Those _claim already judged (another task's, stopped, empty) stay so.
                outcomes.update(
                    {b: Outcome.RETRY for b in ids if b in claimed or b not in outcomes}
                )
                if claimed:  # claimed, then no slot to send in: back to pending, unsent
                    unsent = LinkTransientError(f"no slot to send in: {exc}")
                    _settle(ctx, sender.source, dict.fromkeys(claimed, unsent), claimed,
                            outcomes)  # fmt: skip
                continue
            results = _send_paced(ctx, fanout, sender, grant, claimed, outcomes)
            if results:
                _settle(ctx, sender.source, results, claimed, outcomes)
    return outcomes


def _send_paced(
    ctx: SendContext,
    fanout: Fanout,
    sender: _Sender,
    grant: Grant,
    claimed: dict[str, _Claimed],
    outcomes: dict[str, Outcome],
) -> dict[str, Answer | LinkError]:
    """Send a claimed slice as paced. A request that missed its moment (this process
    was starved or stopped meanwhile) takes a fresh slot, the rest of the slice going
    on time: a late start costs the slots it missed, not the slice. The last try sends
    whatever is left. Batches whose campaign was paused or cancelled meanwhile are
    handed back unsent."""
    results: dict[str, Answer | LinkError] = {}
    waiting = list(claimed)
    tolerance = ctx.throttle.margin_seconds * LATE_SHARE
    for attempt in range(LATE_RETRIES + 1):
        # Each request keeps the moment it was granted, whatever is handed back below.
        moment = dict(zip(waiting, dues(grant, [claimed[b].request for b in waiting]),
                          strict=True))  # fmt: skip
        # The last look at the campaigns' states happens just before the slot, not in
        # it: a look taken in the slot makes its first requests late.
        ctx.throttle.wait(grant, early=LAST_LOOK_SECONDS)
        waiting = _hand_back_stopped(ctx, waiting, claimed, outcomes)
        if not waiting:
            break
        late_after = tolerance if attempt < LATE_RETRIES else None
        answers = fanout.send_all(
            [claimed[b].request for b in waiting], [moment[b] for b in waiting], late_after
        )
        late = []
        for batch_id, answer in zip(waiting, answers, strict=True):
            if isinstance(answer, Late):
                late.append(batch_id)
            else:
                results[batch_id] = answer
        if not late:
            break
        waiting = late
        try:
            grant = _reserve(ctx, sender, claimed, waiting)
        except StorageError as exc:  # unsent, and no slot to send them in: hand back
            error = LinkTransientError(f"missed the slot; {exc}")
            results.update(dict.fromkeys(waiting, error))
            break
    return results


def _until_the_queue_is_short(ctx: SendContext, source: str) -> None:
    """Sleep while the sender's slots are handed out more than ``CLAIM_AHEAD_SECONDS``
    ahead (several campaigns or hosts share it): a slice claimed now would wait that
    long claimed, and go ``in_doubt`` if its worker died meanwhile."""
    while (backlog := ctx.throttle.backlog_seconds(source)) > CLAIM_AHEAD_SECONDS:
        time.sleep(backlog - CLAIM_AHEAD_SECONDS / 2)


def _reserve(
    ctx: SendContext, sender: _Sender, claimed: dict[str, _Claimed], order: list[str]
) -> Grant:
    """Reserve a slot for these claimed requests, leaving in this order."""
    pieces = [min(sender.rate, weight_of(claimed[b].request)) for b in order]
    return ctx.throttle.reserve(sender.source, sum(pieces), sender.rate, pieces)


def _hand_back_stopped(
    ctx: SendContext,
    batch_ids: list[str],
    claimed: dict[str, _Claimed],
    outcomes: dict[str, Outcome],
) -> list[str]:
    """The last look before requests leave: batches of campaigns no longer sending
    (paused, cancelled) go back to ``pending``, their tries uncounted; returns the rest.
    With the database unreachable the claimed slice is sent (it was claimed live)."""
    campaigns = {claimed[b].campaign_id for b in batch_ids}
    try:
        with ctx.db.session() as session:
            # Share-locked (PostgreSQL) until handed back: a resume committing meanwhile
            # waits, then finds these batches pending and hands them out again.
            states = dict(
                session.execute(
                    select(Campaign.id, Campaign.state)
                    .where(Campaign.id.in_(sorted(campaigns)))
                    .with_for_update(read=True)
                ).all()
            )
            live = {c for c, state in states.items() if state == CampaignState.SENDING}
            if len(live) == len(campaigns):
                return batch_ids
            stopped = [b for b in batch_ids if claimed[b].campaign_id not in live]
            session.execute(
                update(Batch)
                .where(among(session, Batch.id, stopped), Batch.state == BatchState.SUBMITTING)
                .values(state=BatchState.PENDING, claimed_by=None, attempts=Batch.attempts - 1)
            )
            ids = [m for b in stopped for m in claimed[b].message_ids]
            session.execute(
                update(Message).where(among(session, Message.id, ids)).values(
                    attempts=Message.attempts - 1)
            )  # fmt: skip
            for campaign_id, state in states.items():
                if state == CampaignState.CANCELLED:  # cancelled meanwhile: never sent
                    control.settle_cancelled(session, campaign_id)
    except StorageError as exc:
        log.warning("could not check campaign states before sending: %s", exc)
        return batch_ids
    for batch_id in stopped:
        outcomes[batch_id] = Outcome.SKIPPED
        del claimed[batch_id]
    return [b for b in batch_ids if b not in outcomes]


def chunks(batch_ids: Sequence[str], size: int = CHUNK_BATCHES) -> Iterator[list[str]]:
    for start in range(0, len(batch_ids), size):
        yield list(batch_ids[start : start + size])


def _slices(batches: list[tuple[str, int]], rate: int) -> Iterator[list[tuple[str, int]]]:
    """Consecutive batches worth a tenth of a second of the level (or one batch): one
    claim, one reservation and one settling transaction carry a whole slice, and a
    slice is short enough to be claimed just before its slot."""
    most = max(1, rate // SLICES_PER_SECOND)
    part: list[tuple[str, int]] = []
    weight = 0
    for batch_id, batch_weight in batches:
        if part and (weight + batch_weight > most or len(part) >= MAX_IN_FLIGHT):
            yield part
            part, weight = [], 0
        part.append((batch_id, batch_weight))
        weight += batch_weight
    if part:
        yield part


def _peek(
    ctx: SendContext,
    fanout: Fanout,
    batch_ids: Sequence[str],
    claimer: str,
    outcomes: dict[str, Outcome],
) -> list[_Sender]:
    """The batches that are ours to send, by sender; the rest get their outcome (those
    whose recipients' sending window is closed are held until it opens)."""
    senders: dict[str, _Sender] = {}
    with ctx.db.session() as session:
        rows = session.execute(
            select(
                Batch.id,
                Batch.campaign_id,
                Batch.state,
                Batch.claimed_by,
                Batch.size,
                Batch.payload,
                Campaign.source,
                Campaign.rate_per_second,
                Campaign.state.label("campaign"),
            )
            .join(Campaign, Campaign.id == Batch.campaign_id)
            .where(among(session, Batch.id, list(batch_ids)))
            .order_by(Batch.seq)
        ).all()
        redelivered = [
            r.id for r in rows if r.state == BatchState.SUBMITTING and r.claimed_by == claimer
        ]
        if redelivered:
            # Our own claims, redelivered after the worker died mid-request: the
            # provider may have queued them. Never resend blindly.
            session.execute(
                update(Batch)
                .where(among(session, Batch.id, redelivered))
                .values(
                    state=BatchState.IN_DOUBT,
                    error="worker stopped while the request was in flight",
                )
            )  # fmt: skip
        sendable = [
            r for r in rows if r.state == BatchState.PENDING and r.campaign == CampaignState.SENDING
        ]
        held = _hold_outside_window(session, fanout, sendable)
    for row in rows:
        if row.id in redelivered:
            outcomes[row.id] = Outcome.IN_DOUBT
        elif (
            row.state != BatchState.PENDING
            or row.campaign != CampaignState.SENDING
            or row.id in held
        ):
            outcomes[row.id] = Outcome.SKIPPED
        else:
            rate = row.rate_per_second or Level.STANDARD.messages_per_second
            sender = senders.setdefault(f"{row.source}/{rate}", _Sender(row.source, rate))
            sender.batches.append((row.id, min(rate, row.size * len(row.payload["messages"]))))
            sender.payloads[row.id] = row.payload
    for batch_id in batch_ids:
        outcomes.setdefault(batch_id, Outcome.SKIPPED)  # unknown ids
    if redelivered:
        apply_waiting(ctx, redelivered)
    return list(senders.values())


def _still_in_window(
    ctx: SendContext, fanout: Fanout, part: list[tuple[str, int]], outcomes: dict[str, Outcome]
) -> list[tuple[str, int]]:
    """A chunk can take minutes to send: before each slice, batches whose recipients'
    window closed meanwhile are held (only campaigns with a window pay for the look)."""
    if not fanout.windowed:
        return part
    try:
        with ctx.db.session() as session:
            rows = session.execute(
                select(Batch.id, Batch.campaign_id).where(
                    among(session, Batch.id, [b for b, _ in part])
                )
            ).all()
            held = _hold_outside_window(session, fanout, rows)
    except StorageError:
        return part  # the claim will meet the same trouble and say so
    for batch_id in held:
        outcomes[batch_id] = Outcome.SKIPPED
    return [(b, w) for b, w in part if b not in held]


def _hold_outside_window(session: Session, fanout: Fanout, rows: Sequence[Any]) -> set[str]:
    windows = {}
    for row in rows:
        window = fanout.spec(session, row.campaign_id).sending_window
        if window is not None:
            windows[row.id] = window.as_tuple()
    return hold_closed(session, windows.items(), datetime.now(UTC))


def _claim(
    ctx: SendContext,
    fanout: Fanout,
    sender: _Sender,
    batch_ids: list[str],
    claimer: str,
    outcomes: dict[str, Outcome],
) -> dict[str, _Claimed]:
    """Claim a slice and build its requests, in one committed transaction."""
    now = datetime.now(UTC)
    claimed: dict[str, _Claimed] = {}
    with ctx.db.session() as session:
        ours = set(
            session.scalars(
                update(Batch)
                .where(among(session, Batch.id, batch_ids), Batch.state == BatchState.PENDING)
                .values(
                    state=BatchState.SUBMITTING,
                    claimed_by=claimer,
                    attempts=Batch.attempts + 1,
                    submitting_at=now,
                )
                .returning(Batch.id)
            )
        )
        for batch_id in batch_ids:
            if batch_id not in ours:
                outcomes[batch_id] = Outcome.SKIPPED
        if not ours:
            return claimed
        batches = session.execute(
            select(Batch.id, Campaign.id.label("campaign_id"), Campaign.state)
            .join(Campaign, Campaign.id == Batch.campaign_id)
            .where(among(session, Batch.id, sorted(ours)))
        ).all()
        stopped = [b.id for b in batches if b.state != CampaignState.SENDING]
        if stopped:  # stopped while we waited: hand them back
            _set(session, stopped, state=BatchState.PENDING)
            outcomes.update(dict.fromkeys(stopped, Outcome.SKIPPED))
        live = {b.id: b for b in batches if b.state == CampaignState.SENDING}
        waiting = _waiting_messages(session, list(live))
        empty = [batch_id for batch_id in live if not waiting.get(batch_id)]
        if empty:
            _set(session, empty, state=BatchState.SKIPPED,
                 error="every message was settled before its turn")  # fmt: skip
            outcomes.update(dict.fromkeys(empty, Outcome.SKIPPED))
        provider = ctx.client
        for batch_id, batch in live.items():
            messages = waiting.get(batch_id)
            if not messages:
                continue
            spec = fanout.spec(session, batch.campaign_id)
            expiries = [e.replace(tzinfo=e.tzinfo or UTC) for _, _, e in messages if e]
            request = provider.request(
                spec, batch_id, [destination for _, destination, _ in messages],
                sender.payloads[batch_id]["messages"],
                valid_until=valid_until(spec, min(expiries) if expiries else None),
                event_report_gate=ctx.event_report_gate,
            )  # fmt: skip
            claimed[batch_id] = _Claimed(
                request, spec.validity, [m for m, _, _ in messages], batch.campaign_id
            )
    return claimed


def _waiting_messages(
    session: Session, batch_ids: list[str]
) -> dict[str, list[tuple[int, str, datetime | None]]]:
    """Each batch's messages still waiting, numbered in request order; messages settled
    meanwhile (a late report for an earlier attempt) drop out of the request."""
    if not batch_ids:
        return {}
    rows = session.execute(
        select(
            Message.id,
            Message.batch_id,
            Message.destination,
            Message.expires_at,
            Message.status,
            Message.position,
        )
        .where(among(session, Message.batch_id, batch_ids))
        .order_by(Message.batch_id, Message.position, Message.id)
    ).all()
    waiting: dict[str, list[tuple[int, str, datetime | None]]] = {}
    positions: list[dict[str, Any]] = []
    for row in rows:
        if row.status != MessageStatus.QUEUED:
            if row.position is not None:
                positions.append({"id": row.id, "position": None})
            continue
        mine = waiting.setdefault(row.batch_id, [])
        if row.position != len(mine):
            positions.append({"id": row.id, "position": len(mine)})
        mine.append((row.id, row.destination, row.expires_at))
    update_by_id(session, _MESSAGES, positions)
    counted = [m for messages in waiting.values() for m, _, _ in messages]
    # Counted when the request is about to leave: an unanswered one counts too.
    session.execute(
        update(Message).where(among(session, Message.id, counted)).values(
            attempts=Message.attempts + 1)
    )  # fmt: skip
    return waiting


def _settle(
    ctx: SendContext,
    source: str,
    results: dict[str, Answer | LinkError],
    claimed: dict[str, _Claimed],
    outcomes: dict[str, Outcome],
) -> None:
    """Record a slice's answers: ids stored, failures judged, all in bulk."""
    answered = {b: r for b, r in results.items() if not isinstance(r, LinkError)}
    retry = [b for b, r in results.items() if isinstance(r, LinkTransientError)]
    doubt = [b for b, r in results.items() if isinstance(r, LinkInDoubtError)]
    refused = {b: r for b, r in results.items() if isinstance(r, LinkRequestError | LinkAuthError)}
    now = datetime.now(UTC)
    with ctx.db.session() as session:
        if answered:
            _record(session, answered, claimed, now)
        if retry:  # nothing left our side: claimable again, the try does not count
            released = list(
                session.scalars(
                    update(Batch)
                    .where(among(session, Batch.id, retry), Batch.state == BatchState.SUBMITTING)
                    .values(state=BatchState.PENDING, error=str(results[retry[0]])[:2000])
                    .returning(Batch.id)
                )
            )
            ids = [m for b in released for m in claimed[b].message_ids]
            session.execute(
                update(Message).where(among(session, Message.id, ids)).values(
                    attempts=Message.attempts - 1)
            )  # fmt: skip
        if doubt:
            _set(session, doubt, state=BatchState.IN_DOUBT, error=str(results[doubt[0]]))
    outcomes.update(dict.fromkeys(answered, Outcome.SUBMITTED))
    outcomes.update(dict.fromkeys(retry, Outcome.RETRY))
    outcomes.update(dict.fromkeys(doubt, Outcome.IN_DOUBT))
    if any(getattr(results[b], "http_status", None) == 429 for b in retry):
        with contextlib.suppress(StorageError):
            ctx.throttle.penalise(source)  # throttled at the gateway: slow the sender
    for batch_id, error in refused.items():  # rare: one by one
        _reject(ctx.db, batch_id, error)  # type: ignore[arg-type]
        outcomes[batch_id] = Outcome.REJECTED
        if isinstance(error, LinkAuthError):
            _fail_campaign_of(
                ctx.db, batch_id, f"{ctx.client.name} refused our credentials: {error}"
            )
    settled = list(answered) + doubt
    if settled:
        apply_waiting(ctx, settled)  # reports that raced ahead of these commits


def _record(
    session: Session,
    answered: dict[str, Answer],
    claimed: dict[str, _Claimed],
    now: datetime,
) -> None:
    """Store each message id on its message (ids mirror the destinations' order)."""
    by_code: dict[int | None, list[str]] = {}  # one code in practice
    for batch_id, answer in answered.items():
        by_code.setdefault(answer.result_code, []).append(batch_id)
    for result_code, batch_ids in by_code.items():
        session.execute(
            update(Batch)
            .where(
                among(session, Batch.id, batch_ids),
                Batch.state.in_((BatchState.SUBMITTING, BatchState.IN_DOUBT)),
            )
            .values(state=BatchState.SUBMITTED, submitted_at=now, result_code=result_code)
        )
    update_by_id(
        session,
        _MESSAGES,
        [
            {"id": message_id, "link_message_id": link_id}
            for batch_id, response in answered.items()
            for message_id, link_id in zip(
                claimed[batch_id].message_ids, response.message_ids, strict=True
            )
        ],
    )
    by_validity: dict[timedelta, list[int]] = {}
    for batch_id in answered:
        by_validity.setdefault(claimed[batch_id].validity, []).extend(claimed[batch_id].message_ids)
    for validity, ids in by_validity.items():
        session.execute(
            update(Message).where(among(session, Message.id, ids)).values(submitted(now, validity))
        )


def _set(session: Session, batch_ids: list[str], *, state: BatchState, error: str = "") -> None:
    values: dict[str, Any] = {"state": state}
    if error:
        values["error"] = error[:2000]
    session.execute(update(Batch).where(among(session, Batch.id, batch_ids)).values(**values))


_MESSAGES: Any = Message.__table__
