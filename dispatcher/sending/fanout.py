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
   pooled keep-alive connections), spread evenly over the slice's share of the
   second as the limiter paced it;
4. records the answers in one transaction.

Requests that found the provider unreachable are handed back (``Outcome.RETRY``) for the
single-batch task and its backoff to retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Campaign, Database
from dispatcher.errors import (
    LinkError,
    LinkTransientError,
    StorageError,
)
from dispatcher.providers import Answer, Priority, Provider, Request, SliceSender
from dispatcher.sending import claims
from dispatcher.sending.batch import (
    Outcome,
    SendContext,
)
from dispatcher.sending.throttle import Grant

try:
    from uvloop import new_event_loop
except ImportError:  # (not built for Windows)
    from asyncio import new_event_loop  # type: ignore[assignment]

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
#: uvloop's timers count whole milliseconds from a clock read once per turn of the loop,
#: so one can fire before its time (by up to 1.4 ms, measured): a paced request sleeps
#: this much past its moment (measured: one timer a request, 1 ms late on average), and
#: again if woken early all the same. Early, it would count in a window it was not
#: granted.
TIMER_SLACK_SECONDS = 0.001
#: Fresh slots taken when this process reached its slot too late, before it sends anyway.
LATE_RETRIES = 5
#: Requests leave on a grid of the limiter's clock (Redis's, shared by every host), each
#: at the first point of it at or after its granted moment: one wake of the loop sends
#: the few due within a step, and their answers come back together. Waking costs a
#: sleeping process more CPU than a request (on a busy 2-core machine, a paced slice of
#: a hundred requests at HIGH took 17-21 ms of CPU one request a wake, 12-14 ms on a
#: 5 ms grid). The step (``grid_step_us``) is at most this long.
SEND_GRID_MOST_US = 5_000


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
        # uvloop (as under ``dispatcher serve``): timers, sockets and callbacks in C,
        # where a slice's hundred paced requests spend most of their loop's time.
        self._loop = new_event_loop()
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
        while ahead > 0:  # (woken early: sleep the rest)
            await asyncio.sleep(ahead + TIMER_SLACK_SECONDS)
            ahead = due - time.monotonic()
        # (Every request sleeps past its moment by the slack: the stream moves as one.)
        if late_after is not None and time.monotonic() - due > late_after + TIMER_SLACK_SECONDS:
            return Late()
        try:
            return await self._sender.send(request)
        except LinkError as exc:
            return exc

    def close(self) -> None:
        self._loop.run_until_complete(self._sender.aclose())
        self._loop.close()


@functools.cache
def grid_step_us(margin_seconds: float) -> int:
    """The send grid's step for the limiter's margin: the longest, up to
    ``SEND_GRID_MOST_US``, that divides both the second and the margin (12 ms: 4 ms).

    What leaves within any second then was granted within a second and a whole number
    of steps of lateness: requests late by up to the margin, in any mix, still came from
    grants within a second and the margin, as the limiter holds to the level. A step
    that did not divide the margin would round some lateness up past it. No margin, no
    grid (0)."""
    margin_us = round(margin_seconds * 1_000_000)
    if margin_us <= 0:
        return 0
    common = math.gcd(1_000_000, margin_us)
    return next(d for d in range(min(common, SEND_GRID_MOST_US), 0, -1) if common % d == 0)


def dues(grant: Grant, requests: Sequence[Request], step_us: int = 0) -> list[float]:
    """When each request of a grant leaves, on this process's monotonic clock: request
    ``i`` at the grant's start plus the messages before it times the grant's spacing,
    as the limiter counted them, put off to the next point of a grid of ``step_us``
    microseconds on the limiter's clock (``grid_step_us``; 0: none)."""
    local = grant.starts - grant.at_seconds  # the limiter's clock to this process's
    moments, before = [], 0
    for request in requests:
        granted = grant.at_seconds + before * grant.spacing
        if step_us:  # (in whole microseconds: seconds since 1970 leave a float few digits)
            on_grid = -(-math.ceil(granted * 1_000_000) // step_us) * step_us / 1_000_000
            granted = max(granted, on_grid)
        moments.append(granted + local)
        before += weight_of(request)
    return moments


class Late:
    """A request that missed its slot and was kept back (``Fanout.send_all``)."""


def weight_of(request: Request) -> int:
    """What a request costs in the limiter: Meta counts every message."""
    return len(request.destinations) * len(request.messages)


def send_many(
    ctx: SendContext,
    fanout: Fanout,
    batch_ids: Sequence[str],
    claimer: str,
    stopping: Callable[[], bool] = lambda: False,
) -> dict[str, Outcome]:
    """Send a chunk of batches; returns each batch's outcome. Once ``stopping`` says so
    (the worker is shutting down), no further slice is claimed: the batches without an
    outcome were left ``pending``, for the caller to hand back."""
    outcomes: dict[str, Outcome] = {}
    senders = claims.peek(ctx, fanout, batch_ids, claimer, outcomes)
    reached: set[str] = set()
    for sender in senders:
        for part in _slices(sender.batches, sender.rate):
            if stopping():
                for batch_id, _ in (b for other in senders for b in other.batches):
                    if batch_id not in reached:
                        del outcomes[batch_id]  # peek's provisional "skipped"
                return outcomes
            reached.update(batch_id for batch_id, _ in part)
            part = claims.still_in_window(ctx, fanout, part, outcomes)
            if not part:
                continue
            ids = [batch_id for batch_id, _ in part]
            claimed: dict[str, claims.Claimed] = {}
            try:
                # Claim, then reserve: a slot taken first could come round while the
                # claim still runs, and a slot missed is a hole in the sender's stream.
                # But not far ahead: a batch claimed is in doubt if its worker dies.
                _until_the_queue_is_short(ctx, sender.source)
                claimed = claims.claim(ctx, fanout, sender, ids, claimer, outcomes)
                if not claimed:
                    continue
                grant = _reserve(ctx, sender, claimed, list(claimed))
            except StorageError as exc:
                log.warning("batches of %s: %s", sender.source[:4], exc)
                # Those claims.claim already judged (another task's, stopped, empty) stay so.
                outcomes.update(
                    {b: Outcome.RETRY for b in ids if b in claimed or b not in outcomes}
                )
                if claimed:  # claimed, then no slot to send in: back to pending, unsent
                    unsent = LinkTransientError(f"no slot to send in: {exc}")
                    unanswered: dict[str, Answer | LinkError] = dict.fromkeys(claimed, unsent)
                    claims.record_answers(ctx, sender, unanswered, claimed, outcomes)
                continue
            results = _send_paced(ctx, fanout, sender, grant, claimed, outcomes)
            if results:
                claims.record_answers(ctx, sender, results, claimed, outcomes)
    return outcomes


def _send_paced(
    ctx: SendContext,
    fanout: Fanout,
    sender: claims.Sender,
    grant: Grant,
    claimed: dict[str, claims.Claimed],
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
    step = grid_step_us(ctx.throttle.margin_seconds)
    for attempt in range(LATE_RETRIES + 1):
        # Each request keeps the moment it was granted, whatever is handed back below.
        requests = [claimed[b].request for b in waiting]
        moment = dict(zip(waiting, dues(grant, requests, step), strict=True))
        # The last look at the campaigns' states happens just before the slot, not in
        # it: a look taken in the slot makes its first requests late.
        ctx.throttle.wait(grant, early=LAST_LOOK_SECONDS)
        waiting = claims.hand_back_stopped(ctx, waiting, claimed, outcomes)
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
    ctx: SendContext, sender: claims.Sender, claimed: dict[str, claims.Claimed], order: list[str]
) -> Grant:
    """Reserve a slot for these claimed requests, leaving in this order."""
    pieces = [min(sender.rate, weight_of(claimed[b].request)) for b in order]
    return ctx.throttle.reserve(sender.source, sum(pieces), sender.rate, pieces)


def chunk_size(rate: int, mean_batch: float) -> int:
    """Batches a task takes: about a second of the level, at most ``CHUNK_BATCHES``. A
    task sends its slices one after another, so a chunk of a hundred batches of 80
    would leave a whole campaign to one or two workers, each a request's round trip
    behind its next slot; a second's worth spreads it over every worker."""
    return max(1, min(CHUNK_BATCHES, math.ceil(rate / max(1.0, mean_batch))))


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
