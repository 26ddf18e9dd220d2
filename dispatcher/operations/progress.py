"""Campaign progress from the database: what the CLI, status JSON and metrics show.
It only reads: a campaign's state is changed by ``campaigns.lifecycle``."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from dispatcher.campaigns.lifecycle import unsettled
from dispatcher.db import Batch, Campaign, MergedRow, Message, Reply
from dispatcher.guardrails import canary, pausing
from dispatcher.masking import mask
from dispatcher.operations.reports import OUTCOME_COLUMNS
from dispatcher.providers import PROVIDER_NAMES
from dispatcher.status import BatchState, CampaignState, MessageStatus
from dispatcher.tracking import replies


@dataclass(frozen=True, slots=True)
class Progress:
    campaign_id: int
    name: str
    state: str
    error: str | None
    level: str | None
    rate_per_second: int | None
    loaded: int
    rejected: int
    duplicates: int
    rejects_path: str | None
    messages: int  # people accepted for sending
    submitted: int
    sent: int
    delivered: int
    read: int
    failed: int
    unsettled: int
    awaiting_resend: int
    expired: int
    in_doubt_batches: int
    by_status: dict[str, int]
    failures: dict[str, int]  # "112403 / WhatsApp 131049" -> messages
    source: str = ""
    # Share of the level the sender may use now: below 1 for a while after Meta's
    # rate-limit errors (``Throttle.factor``); None when the limiter was not asked.
    rate_factor: float | None = None
    cancelled: int = 0  # never sent: the campaign was cancelled first
    # Messages submitted per second over the last RATE_WINDOW_SECONDS.
    send_rate: float = 0.0
    # Sent again to the person's phone number after 131062 (a BSUID not allowed).
    resent_to_phone: int = 0
    # What registration and preparation noted (a repeat, the sender's state, an upload
    # that had to be tried again).
    notes: tuple[str, ...] = ()
    # Never sent, by ``SkipReason`` (e.g. the care window closed before their turn).
    skipped: dict[str, int] = field(default_factory=dict)
    # Messages by WhatsApp's pricing category, billable or not, as the status reports
    # say (seed 004 DLR Example#1); the price is the account's rate card, not known here.
    billable: dict[str, int] = field(default_factory=dict)
    not_billable: dict[str, int] = field(default_factory=dict)
    # Incoming messages answering the campaign's messages (``tracking.replies``), the
    # people who sent them, and the buttons and list rows chosen, by choice.
    replies: int = 0
    people_replied: int = 0
    reply_buttons: dict[str, int] = field(default_factory=dict)
    # Taken by Meta but held back for quality assessment (template pacing, seed 002),
    # and not reported sent since.
    held_for_quality: int = 0
    #: who sends it, as users know it: "LINK" or "Meta"
    provider: str = "LINK"
    # Paused by a guardrail: the signal, its figure and threshold, as one line
    # (``guardrails.pausing.describe``); "" otherwise.
    paused_by: str = ""
    # The canary's figures (``guardrails.canary.describe``): people, seen, failed by
    # class, verdict, held.
    canary: tuple[str, ...] = ()

    @property
    def waiting_to_send(self) -> int:
        return self.by_status.get(MessageStatus.PENDING, 0) + self.by_status.get(
            MessageStatus.QUEUED, 0
        )

    @property
    def eta_seconds(self) -> float | None:
        """Time to submit what is still waiting: at the rate it goes now, else at the
        rate the limiter allows; None when neither is known or nothing waits."""
        if not self.waiting_to_send or self.state != CampaignState.SENDING:
            return None
        allowed = (self.rate_per_second or 0) * (
            1.0 if self.rate_factor is None else self.rate_factor
        )
        rate = self.send_rate or allowed
        return self.waiting_to_send / rate if rate > 0 else None

    @property
    def finished(self) -> bool:
        return self.state in (
            CampaignState.COMPLETED,
            CampaignState.FAILED,
            CampaignState.CANCELLED,
        )

    def as_dict(self) -> dict[str, Any]:
        """The status JSON (CLI ``--json``, the webhook app's ``/campaigns/ID``): the
        sender masked like every number on a status screen; ``dispatcher report`` is
        the export that carries numbers whole."""
        return asdict(self) | {"eta_seconds": self.eta_seconds, "source": mask(self.source)}


def held_for_quality() -> ColumnElement[bool]:
    """Messages Meta took but holds back (``message_status: held_for_quality_assessment``)
    that no report has moved past submitted yet."""
    return Message.held_for_quality.is_(True) & (Message.status == MessageStatus.SUBMITTED)


def progress(session: Session, campaign_id: int) -> Progress | None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    failed_states = (MessageStatus.FAILED, MessageStatus.EXPIRED)
    counts = session.execute(
        select(
            func.count(),
            # A message of an in-doubt request that its reports settled was accepted,
            # though no answer gave it a submission time.
            func.count(func.coalesce(Message.submitted_at, Message.sent_at)),
            func.count(Message.sent_at),
            func.count(Message.delivered_at),
            func.count(Message.read_at),
            func.coalesce(func.sum(case((Message.status.in_(failed_states), 1), else_=0)), 0),
            func.coalesce(func.sum(case((unsettled(), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Message.next_attempt_at.is_not(None), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Message.status == MessageStatus.EXPIRED, 1), else_=0)), 0),
            func.coalesce(func.sum(case((held_for_quality(), 1), else_=0)), 0),
        ).where(Message.campaign_id == campaign_id)
    ).one()
    # Pricing comes in the same pass over the campaign's messages as the statuses.
    by_status: dict[str, int] = {}
    billable: dict[str, int] = {}
    not_billable: dict[str, int] = {}
    for status, category, is_billable, count in session.execute(
        select(Message.status, Message.pricing_category, Message.pricing_billable, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.status, Message.pricing_category, Message.pricing_billable)
    ):
        by_status[status] = by_status.get(status, 0) + count
        if is_billable is not None:
            priced = billable if is_billable else not_billable
            label = category or "not said"
            priced[label] = priced.get(label, 0) + count
    failures = {
        _failure_label(result_code, whatsapp_code): count
        for result_code, whatsapp_code, count in session.execute(
            select(Message.result_code, Message.whatsapp_error_code, func.count())
            .where(
                Message.campaign_id == campaign_id,
                Message.status.in_(failed_states),
            )
            .group_by(Message.result_code, Message.whatsapp_error_code)
        )
    }
    skipped = (
        {
            str(reason or "unknown"): int(count)
            for reason, count in session.execute(
                select(Message.skip_reason, func.count())
                .where(Message.campaign_id == campaign_id, Message.status == MessageStatus.SKIPPED)
                .group_by(Message.skip_reason)
            )
        }
        if by_status.get(MessageStatus.SKIPPED)
        else {}
    )
    in_doubt = session.scalar(
        select(func.count()).where(
            Batch.campaign_id == campaign_id, Batch.state == BatchState.IN_DOUBT
        )
    )
    return Progress(
        campaign_id=campaign.id,
        name=campaign.name,
        state=campaign.state,
        error=campaign.error,
        level=campaign.level,
        rate_per_second=campaign.rate_per_second,
        source=campaign.source,
        loaded=campaign.loaded,
        rejected=campaign.rejected,
        duplicates=campaign.duplicates,
        rejects_path=campaign.rejects_path,
        messages=counts[0],
        submitted=counts[1],
        sent=counts[2],
        delivered=counts[3],
        read=counts[4],
        failed=int(counts[5]),
        unsettled=int(counts[6]),
        awaiting_resend=int(counts[7]),
        expired=int(counts[8]),
        held_for_quality=int(counts[9]),
        provider=PROVIDER_NAMES.get(
            str(((campaign.spec or {}).get("sender") or {}).get("provider")), "LINK"
        ),
        in_doubt_batches=in_doubt or 0,
        by_status={str(k): int(v) for k, v in by_status.items()},
        failures=failures,
        cancelled=int(by_status.get(MessageStatus.CANCELLED, 0)),
        send_rate=_send_rate(session, campaign_id),
        resent_to_phone=_resent_to_phone(session, campaign_id),
        notes=tuple(campaign.notes or ()),
        paused_by=pausing.describe(campaign.paused_by) if campaign.paused_by else "",
        canary=tuple(canary.describe(campaign.canary, datetime.now(UTC)))
        if campaign.canary
        else (),
        skipped=skipped,
        billable=dict(sorted(billable.items())),
        not_billable=dict(sorted(not_billable.items())),
        **_replies(session, campaign_id),
    )


def _replies(session: Session, campaign_id: int) -> dict[str, Any]:
    """Replies to the campaign's messages, the people who replied, and the choices
    made, by button (most chosen first)."""
    total, people = session.execute(
        select(func.count(), func.count(func.distinct(Reply.message_id))).where(
            Reply.campaign_id == campaign_id
        )
    ).one()
    if not total:
        return {}
    buttons: dict[str, int] = {}
    for button, label, count in session.execute(
        select(Reply.button, Reply.label, func.count())
        .where(
            Reply.campaign_id == campaign_id,
            or_(Reply.button.is_not(None), Reply.label.is_not(None)),
        )
        .group_by(Reply.button, Reply.label)
    ):
        shown = replies.button_label(button, label)
        buttons[shown] = buttons.get(shown, 0) + count
    ranked = dict(sorted(buttons.items(), key=lambda item: (-item[1], item[0])))
    return {"replies": int(total), "people_replied": int(people), "reply_buttons": ranked}


#: The send rate shown is over this many seconds.
RATE_WINDOW_SECONDS = 10


def _send_rate(session: Session, campaign_id: int) -> float:
    since = datetime.now(UTC) - timedelta(seconds=RATE_WINDOW_SECONDS)
    recent = session.scalar(
        select(func.count()).where(
            Message.campaign_id == campaign_id, Message.submitted_at >= since
        )
    )
    return (recent or 0) / RATE_WINDOW_SECONDS


def _resent_to_phone(session: Session, campaign_id: int) -> int:
    query = select(func.count(Message.rerouted_from)).where(Message.campaign_id == campaign_id)
    return session.scalar(query) or 0


def _failure_label(result_code: int | None, whatsapp_code: int | None) -> str:
    if whatsapp_code is not None:
        return f"{result_code or '-'} / WhatsApp {whatsapp_code}"
    return str(result_code) if result_code is not None else "not sent"


#: The report's status of a row merged into an earlier one (it has no message).
MERGED = "merged"


def outcomes(session: Session, campaign_id: int) -> Iterator[tuple[object, ...]]:
    """Every message of a campaign and every row merged into another, in
    ``reports.OUTCOME_COLUMNS`` order, by CSV line."""
    return heapq.merge(
        _message_outcomes(session, campaign_id), _merged_outcomes(session, campaign_id), key=_line
    )


def _line(row: tuple[object, ...]) -> int:
    return cast(int, row[0])


def held_note(campaign: Campaign) -> str | None:
    """Why a person not sent yet waits, when a guardrail holds the campaign: the
    report's description of their message."""
    if campaign.state == CampaignState.PAUSED and campaign.paused_by:
        return f"not sent: campaign paused by a guardrail ({pausing.describe(campaign.paused_by)})"
    if campaign.canary and campaign.canary.get("verdict") is None:
        return "not sent yet: the canary goes first, the rest once its outcomes are judged"
    return None


def _message_outcomes(session: Session, campaign_id: int) -> Iterator[tuple[object, ...]]:
    answers = _replies_by_message(session, campaign_id)  # read before the stream opens
    campaign = session.get(Campaign, campaign_id)
    held = held_note(campaign) if campaign is not None else None
    waiting = (MessageStatus.PENDING, MessageStatus.QUEUED)
    rows = session.execute(
        select(
            Message.source_line,
            Message.identifiers,
            Message.destination,
            Message.status,
            Message.attempts,
            Message.retry_class,
            Message.result_code,
            Message.whatsapp_error_code,
            Message.result_description,
            Message.batch_id,
            Message.link_message_id,
            Message.submitted_at,
            Message.sent_at,
            Message.delivered_at,
            Message.read_at,
            Message.failed_at,
            Message.skip_reason,
            Message.wa_message_id,
            Message.pricing_category,
            Message.pricing_billable,
            Message.id,
        )
        .where(Message.campaign_id == campaign_id)
        .order_by(Message.source_line)
        .execution_options(yield_per=1000)
    )
    for row in rows:
        values = list(row)
        values[1] = " ".join(values[1] or [])
        if held is not None and values[3] in waiting and values[8] is None:
            values[8] = held
        chosen = answers.get(values.pop())
        if values[-1] is not None:  # billable, spelt as LINK reports it
            values[-1] = "true" if values[-1] else "false"
        if chosen is None:
            values += [0, None]
        else:
            values += [len(chosen), "; ".join(dict.fromkeys(c for c in chosen if c)) or None]
        yield tuple(values)


def _replies_by_message(session: Session, campaign_id: int) -> dict[int, list[str]]:
    """Each replied-to message's replies, as the choices they made ('' for none)."""
    found: dict[int, list[str]] = {}
    for message_id, button, label in session.execute(
        select(Reply.message_id, Reply.button, Reply.label)
        .where(Reply.campaign_id == campaign_id)
        .order_by(Reply.received_at, Reply.id)
    ):
        found.setdefault(message_id, []).append(replies.button_label(button, label))
    return found


def _merged_outcomes(session: Session, campaign_id: int) -> Iterator[tuple[object, ...]]:
    """Merged rows as report lines: line, identifiers, status ``merged`` and where it
    went in the description; the message's columns empty."""
    rows = session.execute(
        select(
            MergedRow.line,
            MergedRow.identifiers,
            MergedRow.description,
        )
        .where(MergedRow.campaign_id == campaign_id)
        .order_by(MergedRow.line, MergedRow.id)
        .execution_options(yield_per=1000)
    )
    rest = (None,) * (len(OUTCOME_COLUMNS) - 9)
    for line, identifiers, description in rows:
        yield (line, " ".join(identifiers), None, MERGED, None, None, None, None,
               description, *rest)  # fmt: skip
