"""The canary: a share of the people sent first, the rest held until its outcomes are
judged.

Preparation writes the canary's batches first (sent at once) and every later batch
``waiting`` (``preparation.batching.Writer``), and stores the plan in
``Campaign.canary``. ``guardrails.watch`` judges it every few seconds once every
person is written: a failure class whose share of the canary's outcomes is over its
threshold pauses the campaign (the operator resumes or cancels it); all outcomes in
and under the thresholds releases the rest; so does the end of the wait, when nothing
crossed, with what stayed unseen said. LINK resends retryable failures for up to 15
minutes before it reports them (seed 004 'Resending'): the canary judges what it can
see and says what it could not.

The canary is the list's first people (in file order), not a sample spread over it:
its batches are then the first sequence numbers and every later one waits, with no
second pass over the list. A list sorted by, say, country gives a canary of one
country; shuffle such a list, or set a larger share.

The plan (``Campaign.canary``), JSON::

    {"share": 2.0, "min_people": 50, "wait": "10m", "people": 60, "held": 2940,
     "first_seq": 1, "last_seq": 2, "first_message_id": 1, "last_message_id": 60,
     "started_at": ..., "until": ..., "left_at": ... (its batches all left; the wait
     counts from then),
     "verdict": null | "paused" | "released" | "released_after_wait" | "resumed",
     "judged_at": ..., "seen": 41, "unseen": 19, "failed": {"spam_rate_limit": 30},
     "figure": "50% of 60 canary messages failed with 131048 (spam rate limit)"}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Campaign, Message
from dispatcher.guardrails import pausing, signals
from dispatcher.guardrails.policy import Canary, Guardrails, describe_duration
from dispatcher.sending import batch_states
from dispatcher.status import BatchState, MessageStatus

PAUSED = "paused"
RELEASED = "released"
RELEASED_AFTER_WAIT = "released_after_wait"
RESUMED = "resumed"
VERDICTS = {
    PAUSED: "paused: a failure class crossed its threshold",
    RELEASED: "good: the rest was released",
    RELEASED_AFTER_WAIT: "the wait ended with nothing over a threshold: the rest was released",
    RESUMED: "the operator resumed the campaign: the rest was released",
}
_RESENDS = "LINK resends retryable failures for up to 15 minutes before it reports them"


def size(canary: Canary, people: int) -> int:
    """People in the canary: its share of ``people`` (rounded up), at least
    ``min_people``, at most everyone."""
    return max(0, min(people, max(math.ceil(canary.share * people / 100), canary.min_people)))


def plan(canary: Canary, *, people: int, held: int, first_seq: int, last_seq: int,
         started: datetime) -> dict[str, Any]:  # fmt: skip
    """The stored plan of a canary just written."""
    return {
        "share": canary.share,
        "min_people": canary.min_people,
        "wait": describe_duration(canary.wait),
        "people": people,
        "held": held,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "started_at": started.isoformat(),
        "until": (started + canary.wait).isoformat(),
        "verdict": None,
        "judged_at": None,
        "seen": 0,
        "unseen": people,
        "failed": {},
        "figure": "",
    }


def located(session: Session, campaign_id: int, stored: dict[str, Any]) -> dict[str, Any]:
    """The plan with its messages' id range: the canary's messages were written first,
    in one ``COPY`` per chunk, so their ids run before every waiting message's. A
    resend moves a message to a later batch, never to another id: the id range still
    finds it."""
    first, last = batch_range(campaign_id, stored)
    low, high = session.execute(
        select(func.min(Message.id), func.max(Message.id)).where(
            Message.campaign_id == campaign_id, Message.batch_id >= first, Message.batch_id <= last
        )
    ).one()
    return {**stored, "first_message_id": low, "last_message_id": high}


def batch_range(campaign_id: int, stored: dict[str, Any]) -> tuple[str, str]:
    """The canary's first and last batch ids (``Writer``'s ids sort as their numbers)."""
    return (f"c{campaign_id}-b{int(stored['first_seq']):06d}",
            f"c{campaign_id}-b{int(stored['last_seq']):06d}")  # fmt: skip


@dataclass(slots=True)
class Tally:
    """The canary's messages by outcome."""

    people: int = 0  # canary messages that were to be sent (not cancelled or skipped)
    seen: int = 0  # with an outcome: sent, delivered, read, or failed
    unseen: int = 0  # no outcome yet (queued, or submitted without a report)
    failed: dict[str, int] = field(default_factory=dict)  # by failure class
    by_code: dict[str, dict[int, int]] = field(default_factory=dict)


def tally(session: Session, campaign_id: int, stored: dict[str, Any]) -> Tally:
    """Count the canary's messages (by their id range, the primary key; by their
    batches when the plan has no ids)."""
    if stored.get("first_message_id") is not None:
        among = Message.id.between(stored["first_message_id"], stored["last_message_id"])
    else:
        first, last = batch_range(campaign_id, stored)
        among = Message.batch_id.between(first, last)
    rows = session.execute(
        select(Message.status, Message.whatsapp_error_code, Message.result_code, func.count())
        .where(Message.campaign_id == campaign_id, among)
        .group_by(Message.status, Message.whatsapp_error_code, Message.result_code)
    ).all()
    found = Tally()
    for status, whatsapp_code, result_code, count in rows:
        if status in (MessageStatus.CANCELLED, MessageStatus.SKIPPED):
            continue
        found.people += count
        if status in signals.SUCCESS:
            found.seen += count
        elif status in signals.FAILURE:
            found.seen += count
            name = signals.classify(whatsapp_code, result_code)
            if name is not None:
                found.failed[name] = found.failed.get(name, 0) + count
                code = signals.code_of(whatsapp_code, result_code)
                codes = found.by_code.setdefault(name, {})
                codes[code] = codes.get(code, 0) + count
        else:
            found.unseen += count
    return found


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str | None  # None: wait
    signal: pausing.Signal | None = None
    figure: str = ""


def decide(found: Tally, stored: dict[str, Any], rails: Guardrails, now: datetime) -> Decision:
    """What the canary's outcomes say now."""
    all_in = found.unseen == 0
    need = signals.needed_outcomes(rails.min_outcomes, found.people)
    if rails.enabled and (found.seen >= need or all_in):
        crossed = signals.crossings(found.failed, found.seen, rails)
        if crossed:
            worst = crossed[0]
            label = signals.CLASSES[worst.name][1]
            codes = "/".join(str(c) for c in sorted(found.by_code.get(worst.name, {})))
            figure = (f"{signals.percent(worst.share)} of {found.seen} canary messages failed "
                      f"with {codes or signals.codes_text(worst.name)} ({label})")  # fmt: skip
            held = int(stored.get("held", 0))
            detail = (f"{held:,} {'person' if held == 1 else 'people'} held until "
                      "`dispatcher resume` or `dispatcher cancel`")  # fmt: skip
            if found.unseen:
                detail += (f"; {found.unseen} of {found.people} canary messages had no "
                           f"outcome yet ({_RESENDS})")  # fmt: skip
            also = [f"{signals.CLASSES[c.name][1]} {signals.percent(c.share)}" for c in crossed[1:]]
            if also:
                detail += f"; also over its threshold: {', '.join(also)}"
            signal = pausing.Signal(
                "canary",
                figure,
                f"{signals.percent(worst.threshold)} of the canary's outcomes",
                detail,
            )
            return Decision(PAUSED, signal, figure)
    figure = (
        f"{found.seen} of {found.people} canary messages with an outcome, none over a threshold"
    )
    if all_in:
        return Decision(RELEASED, figure=figure)
    if now >= datetime.fromisoformat(str(stored["until"])):
        return Decision(RELEASED_AFTER_WAIT, figure=f"{figure}; {found.unseen} unseen "
                        f"after the wait ({_RESENDS})")  # fmt: skip
    return Decision(None)


def record(session: Session, campaign_id: int, stored: dict[str, Any], found: Tally,
           decision: Decision, now: datetime, *, changed: bool = False) -> None:  # fmt: skip
    """Store the canary's figures (and verdict, once given) on the campaign; ``changed``:
    ``stored`` itself differs from what the campaign holds."""
    updated = {
        **stored,
        "seen": found.seen,
        "unseen": found.unseen,
        "failed": found.failed,
    }
    if decision.verdict is not None:
        updated |= {"verdict": decision.verdict, "judged_at": now.isoformat(),
                    "figure": decision.figure}  # fmt: skip
    if changed or updated != stored:
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(canary=updated))


def step(
    session: Session, campaign_id: int, stored: dict[str, Any], rails: Guardrails, now: datetime
) -> list[str]:
    """Judge a campaign's canary once; returns the batches released for sending."""
    found = tally(session, campaign_id, stored)
    judged = departed(session, campaign_id, stored, now)
    changed = judged is not stored
    decision = decide(found, judged, rails, now)
    if decision.verdict == RELEASED_AFTER_WAIT and judged.get("left_at") is None:
        decision = Decision(None)  # the wait counts from when the canary has left
    if decision.verdict == PAUSED:
        assert decision.signal is not None
        if pausing.pause(session, campaign_id, decision.signal, now):
            record(session, campaign_id, judged, found, decision, now, changed=changed)
        return []
    record(session, campaign_id, judged, found, decision, now, changed=changed)
    if decision.verdict is None:
        return []
    return batch_states.release_waiting(session, campaign_id, now)


def departed(
    session: Session, campaign_id: int, stored: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The plan with ``left_at`` once none of the canary's batches waits to leave
    (pending, or held by a sending window or the messaging tier), and its wait (``until``)
    counted from then: a canary held for hours by a closed window is judged on its
    outcomes, not released unseen by a wait that ran out before it was sent."""
    if stored.get("left_at") is not None:
        return stored
    first, last = batch_range(campaign_id, stored)
    waiting = session.scalar(
        select(func.count()).where(
            Batch.campaign_id == campaign_id,
            Batch.id.between(first, last),
            Batch.state.in_((BatchState.PENDING, BatchState.HELD)),
        )
    )
    if waiting:
        return stored
    until = datetime.fromisoformat(str(stored["until"]))
    wait = until - datetime.fromisoformat(str(stored["started_at"]))
    return {**stored, "left_at": now.isoformat(), "until": max(until, now + wait).isoformat()}


def resumed(session: Session, campaign_id: int, now: datetime) -> list[str]:
    """The operator resumed the campaign. After the canary's own pause the rest goes
    (returned for the send queue): overriding it is the operator's call. A canary not
    judged yet stays out: a resume after some other pause (the operator's, a template's)
    or of a campaign still sending (to hand its batches out again) is no verdict on it,
    and ``guardrails.watch`` judges it on."""
    stored = session.scalar(select(Campaign.canary).where(Campaign.id == campaign_id))
    if stored and stored.get("verdict") is None:
        return []
    if stored and stored.get("verdict") == PAUSED:
        updated = {**stored, "verdict": RESUMED, "resumed_at": now.isoformat()}
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(canary=updated))
    return batch_states.release_waiting(session, campaign_id, now)


def describe(stored: dict[str, Any], now: datetime | None = None) -> list[str]:
    """The canary's figures as lines for ``status`` and the report."""
    people = int(stored.get("people", 0))
    lines = [
        f"canary: {people:,} people ({signals.percent(float(stored.get('share', 0)))}, at least "
        f"{stored.get('min_people')}), {int(stored.get('held', 0)):,} held behind it, "
        f"wait {stored.get('wait')}"
    ]
    failed = stored.get("failed") or {}
    by_class = ", ".join(f"{signals.CLASSES[n][1]} {c}" for n, c in failed.items() if n in
                         signals.CLASSES) or "none"  # fmt: skip
    lines.append(f"canary outcomes: {stored.get('seen', 0)} seen, {stored.get('unseen', 0)} "
                 f"not yet; failed by class: {by_class}")  # fmt: skip
    verdict = stored.get("verdict")
    if verdict is None:
        until = datetime.fromisoformat(str(stored["until"]))
        left = f" (the wait ends {until:%H:%M:%S} UTC)" if now is None or until > now else ""
        if not left and stored.get("left_at") is None:
            left = " (some of its messages have not left yet: its wait runs from when they have)"
        lines.append(f"canary verdict: not yet{left}")
    else:
        said = VERDICTS.get(str(verdict), str(verdict))
        # A pause's figure is the pause's own line (``pausing.describe``).
        shown = stored.get("figure") and verdict != PAUSED
        figure = f" ({stored['figure']})" if shown else ""
        lines.append(f"canary verdict: {said}{figure}")
    return lines
