"""Sending one batch: claim it, wait for the sender's capacity, send it, record ids.

Crash safety (ARCHITECTURE): the batch is marked ``submitting`` (with the id of the task
delivery that claimed it) in its own committed transaction just before the request
leaves. The same task delivered again and finding its own claim is a redelivery after a
crash mid-request: it marks the batch ``in_doubt`` instead of sending it again. DLRs
carrying the refId settle in-doubt messages (``tracking``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.campaigns import lifecycle
from dispatcher.campaigns.spec import LINK_DEFAULT_VALIDITY_MINUTES, CampaignSpec, WindowSpec
from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.errors import (
    LinkAuthError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
    StorageError,
)
from dispatcher.providers import Answer, Level, Provider, Request, answering
from dispatcher.resending.policy import RetryClass, retry_class
from dispatcher.sending import batch_states, care_window
from dispatcher.sending.throttle import Throttle
from dispatcher.sending.windows import hold_closed
from dispatcher.settings import get_settings
from dispatcher.status import BatchState, CampaignState, MessageStatus, predecessors
from dispatcher.tracking import apply as tracking
from dispatcher.tracking import sender_events

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    SUBMITTED = "submitted"
    REJECTED = "rejected"
    IN_DOUBT = "in_doubt"
    RETRY = "retry"  # nothing was sent; try again later
    SKIPPED = "skipped"  # not ours to send (already handled, or campaign stopped)


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a worker process holds for sending: one of each, reused across tasks.
    ``event_report_gate`` is where the provider is asked to send status reports."""

    db: Database
    client: Provider
    throttle: Throttle
    event_report_gate: str | None


def send_batch(ctx: SendContext, batch_id: str, claimer: str) -> Outcome:
    """Send one batch. ``claimer`` identifies this delivery of the task (its task id):
    a redelivery of the same task finds its own claim, a duplicate task finds another's.
    """
    peek = _peek(ctx, batch_id, claimer)
    if isinstance(peek, Outcome):
        return peek
    source, weight, rate = peek
    # Capacity first, claim second: the claim is committed just before the request
    # leaves, so a worker killed while waiting for capacity leaves a plain pending batch.
    try:
        grant = ctx.throttle.acquire(source, weight, rate)
    except StorageError as exc:
        log.warning("batch %s: %s", batch_id, exc)
        return Outcome.RETRY
    if grant.waited_seconds > 1:
        log.debug("batch %s waited %.2fs for capacity", batch_id, grant.waited_seconds)
    claimed = _claim(ctx, batch_id, claimer)
    if isinstance(claimed, Outcome):
        return claimed
    request, spec_validity = claimed
    try:
        response = ctx.client.send(request)
    except LinkTransientError as exc:
        _release(ctx.db, batch_id, str(exc))
        if slows_sender(exc):
            with contextlib.suppress(StorageError):
                ctx.throttle.penalise(source, weight, rate)
        return Outcome.RETRY
    except LinkInDoubtError as exc:
        _set_state(ctx.db, batch_id, BatchState.IN_DOUBT, str(exc), exc.result_code)
        # Reports that came before we gave up waiting can settle its messages now.
        apply_waiting(ctx, [batch_id])
        return Outcome.IN_DOUBT
    except (LinkRequestError, LinkAuthError) as exc:
        _reject(ctx.db, batch_id, exc)
        if isinstance(exc, LinkAuthError):
            _fail_campaign_of(ctx.db, batch_id, refused_account(ctx, request, exc))
        return Outcome.REJECTED
    slow_down(ctx, _record(ctx.db, batch_id, response, spec_validity, request.destinations, source))
    return Outcome.SUBMITTED


def slows_sender(exc: LinkTransientError) -> bool:
    """Throttled: by the gateway (HTTP 429), or by WhatsApp before anything was sent (a
    rate-limit code in the answer, Meta 4, 80007, 130429). Slows the whole sender; a
    pair limit (131056) holds only its person's send (the task's backoff)."""
    return exc.http_status == 429 or retry_class(exc.whatsapp_code) is RetryClass.RATE_LIMIT


def apply_waiting(ctx: SendContext, batch_ids: list[str]) -> None:
    """Apply the reports about these batches that were tried and left ``unmatched``
    (by the sweep, or before the batch was claimed); rate-limit errors among them slow
    the sender down, as the applier's would. The applier itself leaves a batch's
    reports untried while its request is in flight and applies them once its answer
    is stored: no worker reads them for it."""
    with ctx.db.session() as session:
        tracking.apply_waiting_many(session, batch_ids, unmatched_only=True)
        limited = tracking.rate_limited_senders(session)
    slow_down(ctx, limited)


def slow_down(ctx: SendContext, senders: dict[str, tracking.Refused]) -> None:
    """Senders that met Meta's rate limit: lower their rate in the shared limiter."""
    for sender, refused in senders.items():
        with contextlib.suppress(StorageError):
            ctx.throttle.penalise(sender, refused.messages, refused.level)


def _peek(ctx: SendContext, batch_id: str, claimer: str) -> tuple[str, int, int] | Outcome:
    """Is the batch ours to send? Returns (sender, weight, rate) when it is."""
    with ctx.db.session() as session:
        row = session.execute(
            select(Batch, Campaign).join(Campaign).where(Batch.id == batch_id)
        ).one_or_none()
        if row is None:
            log.warning("batch %s does not exist", batch_id)
            return Outcome.SKIPPED
        batch, campaign = row
        if batch.state == BatchState.SUBMITTING:
            if batch.claimed_by != claimer:
                return Outcome.SKIPPED  # another delivery of this batch is sending it
            # Our own claim, redelivered after the worker died between claim and answer:
            # the provider may have queued the request. Never resend blindly.
            batch_states.mark(
                batch, BatchState.IN_DOUBT, "worker stopped while the request was in flight"
            )
            return Outcome.IN_DOUBT
        if batch.state != BatchState.PENDING or campaign.state != CampaignState.SENDING:
            return Outcome.SKIPPED
        window = (campaign.spec or {}).get("sending_window")
        if window and hold_closed(
            session, [(batch_id, WindowSpec.model_validate(window).as_tuple())],
            datetime.now(UTC),
        ):  # fmt: skip
            return Outcome.SKIPPED  # held until its recipients' window opens
        weight = batch.size * len(batch.payload["messages"])
        rate = campaign.rate_per_second or Level.STANDARD.messages_per_second
        return campaign.source, weight, rate


def _claim(ctx: SendContext, batch_id: str, claimer: str) -> tuple[Request, timedelta] | Outcome:
    with ctx.db.session() as session:
        if not batch_states.claim(session, [batch_id], claimer, datetime.now(UTC)):
            return Outcome.SKIPPED
        batch, campaign = session.execute(
            select(Batch, Campaign).join(Campaign).where(Batch.id == batch_id)
        ).one()
        if campaign.state != CampaignState.SENDING:
            batch_states.mark(batch, BatchState.PENDING)  # stopped while we waited; hand it back
            return Outcome.SKIPPED
        spec = CampaignSpec.model_validate(campaign.spec)
        care_window.skip_closed(session, {batch_id: campaign.id}, lambda _: spec)
        # Only messages still waiting go out: one settled meanwhile (a late report for
        # an earlier attempt, say) drops out of the request, never to be sent twice.
        waiting = session.execute(
            select(Message.id, Message.destination, Message.expires_at)
            .where(Message.batch_id == batch_id, Message.status == MessageStatus.QUEUED)
            .order_by(Message.position, Message.id)
        ).all()
        session.execute(
            update(Message)
            .where(Message.batch_id == batch_id, Message.status != MessageStatus.QUEUED)
            .values(position=None)
        )
        if not waiting:
            batch_states.mark(
                batch, BatchState.SKIPPED, "every message was settled before its turn"
            )
            return Outcome.SKIPPED
        session.execute(
            update(Message),
            [{"id": row.id, "position": index} for index, row in enumerate(waiting)],
        )
        # Counted when the request is about to leave: an unanswered one counts too.
        session.execute(
            update(Message)
            .where(Message.id.in_([row.id for row in waiting]))
            .values(attempts=Message.attempts + 1)
        )
        expiries = [e.replace(tzinfo=e.tzinfo or UTC) for _, _, e in waiting if e is not None]
        request = ctx.client.request(
            spec,
            batch_id,
            [row.destination for row in waiting],
            batch.payload["messages"],
            valid_until=valid_until(spec, min(expiries) if expiries else None),
            event_report_gate=ctx.event_report_gate,
            campaign_id=campaign.id,
        )
        return request, spec.validity


def valid_until(spec: CampaignSpec, expires_at: datetime | None) -> datetime | None:
    """When a batch's messages stop being worth delivering, to the second: the spec's
    validity from now, or None for the provider's own.

    A resend keeps the validity of the first submission (``expires_at``): it is never
    extended by sending again.
    """
    validity = expires_at
    if validity is None and spec.validity_minutes:
        validity = datetime.now(UTC) + timedelta(minutes=spec.validity_minutes)
    if validity is not None:
        validity = validity.replace(microsecond=0)
    return validity


def _release(db: Database, batch_id: str, error: str) -> None:
    """Nothing left our side: the batch may be claimed again (the try does not count)."""
    with db.session() as session:
        allowed = (BatchState.SUBMITTING,)
        if batch_states.move(session, [batch_id], BatchState.PENDING, allowed=allowed, error=error):
            session.execute(
                update(Message)
                .where(Message.batch_id == batch_id, Message.position.is_not(None))
                .values(attempts=Message.attempts - 1)
            )


def give_up(db: Database, batch_id: str, reason: str) -> None:
    """Retries are exhausted and nothing was ever sent: its people are reported unsent."""
    with db.session() as session:
        allowed = (BatchState.PENDING,)
        rejected = batch_states.move(
            session, [batch_id], BatchState.REJECTED, allowed=allowed, error=reason
        )
        if not rejected:  # another delivery holds (or sent) it: its outcome stands
            return
        session.execute(
            update(Message)
            .where(
                Message.batch_id == batch_id,
                Message.status.in_(predecessors(MessageStatus.FAILED)),
                Message.submitted_at.is_(None),
            )
            .values(
                status=MessageStatus.FAILED,
                result_description=f"not sent: {reason}"[:1000],
                failed_at=datetime.now(UTC),
            )
        )


def _set_state(
    db: Database, batch_id: str, state: BatchState, error: str, result_code: int | None
) -> None:
    with db.session() as session:
        batch_states.move(session, [batch_id], state, error=error, result_code=result_code)


def _reject(db: Database, batch_id: str, exc: LinkRequestError | LinkAuthError) -> None:
    """The provider refused the request: none of its messages was queued; they failed."""
    now = datetime.now(UTC)
    with db.session() as session:
        batch_states.move(
            session, [batch_id], BatchState.REJECTED, error=str(exc), result_code=exc.result_code
        )
        session.execute(
            update(Message)
            .where(
                Message.batch_id == batch_id,
                Message.status.in_(predecessors(MessageStatus.FAILED)),
            )
            .values(
                status=MessageStatus.FAILED,
                result_code=exc.result_code,
                # Meta refuses one person's send with WhatsApp's own code (131062, a BSUID
                # not allowed, say): the retry table judges it as it judges a report's.
                whatsapp_error_code=exc.whatsapp_code,
                result_description=str(exc)[:1000],
                failed_at=now,
            )
        )
        if exc.whatsapp_code in sender_events.TEMPLATE_CODES:  # its template paused/disabled
            campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_id))
            if campaign_id is not None:
                sender_events.template_failures(session, {campaign_id: (exc.whatsapp_code, now)})


def note_answers(
    session: Session, answers: list[tuple[int, str, Answer]], source: str | None = None
) -> None:
    """What one-person answers (message id, destination, answer) say beyond the id
    (Meta's): the people they name go into the identity book when they include the
    destination we used (seed 000: ``contacts`` gives ``wa_id`` and ``user_id``), their
    BSUIDs in the portfolio of ``source``, the sender (seed 004), and messages held for
    quality are marked."""
    held = [message_id for message_id, _, answer in answers if answer.held_for_quality]
    if held:
        session.execute(update(Message).where(Message.id.in_(held)).values(held_for_quality=True))
    groups = []
    for message_id, destination, answer in answers:
        if answer.named_identifiers:
            group = book.identifiers_in((destination, *answer.named_identifiers))
            if len(group) > 1 and destination in group:
                groups.append((message_id, group))
    if groups:
        portfolio = get_settings().portfolio_name(source)
        now = datetime.now(UTC)
        book.learn_links(session, [
            (group, book.Source("answer", f"message {message_id}", now, portfolio))
            for message_id, group in groups
        ])  # fmt: skip


def refused_account(ctx: SendContext, request: Request, exc: LinkAuthError) -> str:
    """Why a campaign stopped: its provider refused the credentials, or the account
    (Meta also blocks an account, e.g. 368, 131031)."""
    return f"{answering(ctx.client, request).name} refused the account or its credentials: {exc}"


def _fail_campaign_of(db: Database, batch_id: str, error: str) -> None:
    with db.session() as session:
        campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_id))
        if campaign_id is not None:
            lifecycle.fail(session, campaign_id, error, (CampaignState.SENDING,))


def submitted(now: datetime, validity: timedelta) -> dict[str, Any]:
    """Message columns once the provider accepted the request: ``submitted`` unless a report
    already moved it further, and a validity counted from the first submission."""
    return {
        "status": case(
            (Message.status.in_(predecessors(MessageStatus.SUBMITTED)), "submitted"),
            else_=Message.status,
        ),
        "submitted_at": now,
        "expires_at": func.coalesce(Message.expires_at, now + validity),
    }


def _record(
    db: Database,
    batch_id: str,
    response: Answer,
    validity: timedelta = timedelta(minutes=LINK_DEFAULT_VALIDITY_MINUTES),
    destinations: Sequence[str] = (),
    source: str | None = None,
) -> dict[str, tracking.Refused]:
    """Store each message id on its message (ids mirror the destinations' order, which
    ``destinations`` are), then apply the reports that raced ahead of this commit
    (parked as unmatched); returns the senders rate-limited among them."""
    now = datetime.now(UTC)
    with db.session() as session:
        batch_states.submitted(session, [batch_id], now, response.result_code)
        ids = session.execute(
            select(Message.id)
            .where(Message.batch_id == batch_id, Message.position.is_not(None))
            .order_by(Message.position)
        ).scalars()
        in_order = list(ids)
        rows = [
            {"id": message_id, "link_message_id": link_id}
            for message_id, link_id in zip(in_order, response.message_ids, strict=True)
        ]
        session.execute(update(Message), rows)
        in_request = (Message.batch_id == batch_id) & Message.position.is_not(None)
        session.execute(update(Message).where(in_request).values(submitted(now, validity)))
        if len(in_order) == 1 and len(destinations) == 1:
            note_answers(session, [(in_order[0], destinations[0], response)], source)
    with db.session() as session:
        tracking.apply_waiting(session, batch_id)
        return tracking.rate_limited_senders(session)
