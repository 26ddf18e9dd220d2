"""State machines of messages, batches and campaigns (ARCHITECTURE 'Message status').

Delivery reports may arrive twice or out of order, so a message's status only moves
forward: ``advances(old, new)`` is the single rule, and the database applies it with a
conditional UPDATE (``WHERE status IN predecessors(new)``) so concurrent receivers agree.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache


class MessageStatus(StrEnum):
    PENDING = "pending"  # loaded, no batch yet
    QUEUED = "queued"  # in a batch waiting for (or in) its request
    SUBMITTED = "submitted"  # LINK answered 112001 with our messageId
    SENT = "sent"  # 112002 / 112006
    DELIVERED = "delivered"  # 112003
    READ = "read"  # 112007
    DELETED = "deleted"  # 112008: the recipient deleted it
    FAILED = "failed"  # 112000 / 112403 / 112404 / 112406 / 112408, or request rejected
    EXPIRED = "expired"  # validity ran out before it could be sent
    UNKNOWN = "unknown"  # 12409: LINK will send no further reports for it
    CANCELLED = "cancelled"  # never sent: its campaign was cancelled first
    # Never sent: a check as its request was about to leave said no (why: the message's
    # ``skip_reason``, e.g. the customer care window closed meanwhile).
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    """Why a message is ``skipped``: stored in ``messages.skip_reason``, shown by
    ``dispatcher status`` and the per-person report."""

    CARE_WINDOW_CLOSED = "care_window_closed"
    # The person had their marketing messages of the period from this portfolio
    # (``guardrails.caps``); the message's description says how many and from when.
    FREQUENCY_CAP = "frequency_cap"

    @property
    def description(self) -> str:
        return _SKIP_DESCRIPTIONS[self]


_SKIP_DESCRIPTIONS = {
    SkipReason.CARE_WINDOW_CLOSED: "not sent: the 24-hour customer care window had closed "
    "when its request was to leave (no message from this person to the sender's number "
    "in the last 24 h)",
    SkipReason.FREQUENCY_CAP: "not sent: the person had the marketing messages the "
    "frequency cap allows from this portfolio in its period (eligible again once the "
    "oldest leaves the period)",
}


# Position on the road to the recipient. UNKNOWN sits between sent and delivered: a
# later delivered/read report (should one still come) may still overrule it.
_RANK: dict[MessageStatus, int] = {
    MessageStatus.PENDING: 0,
    MessageStatus.QUEUED: 10,
    MessageStatus.SUBMITTED: 20,
    MessageStatus.SENT: 30,
    MessageStatus.UNKNOWN: 35,
    MessageStatus.DELIVERED: 40,
    MessageStatus.READ: 50,
    MessageStatus.DELETED: 60,
}
_FAILURES = frozenset({MessageStatus.FAILED, MessageStatus.EXPIRED})
_NOT_YET_DELIVERED = frozenset(
    {
        MessageStatus.PENDING,
        MessageStatus.QUEUED,
        MessageStatus.SUBMITTED,
        MessageStatus.SENT,
        MessageStatus.UNKNOWN,
    }
)

#: Statuses after which the campaign waits for nothing more from LINK.
SETTLED = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.DELETED,
        MessageStatus.FAILED,
        MessageStatus.EXPIRED,
        MessageStatus.UNKNOWN,
        MessageStatus.CANCELLED,
        MessageStatus.SKIPPED,
    }
)


def advances(old: MessageStatus, new: MessageStatus) -> bool:
    """True when a report saying ``new`` may replace ``old``.

    Failures end a message (our own resend is an explicit step, not a report);
    a failure cannot overrule a delivery; everything else only moves up the road.
    """
    if old in _FAILURES or old in (MessageStatus.CANCELLED, MessageStatus.SKIPPED):
        return False
    if new in (MessageStatus.CANCELLED, MessageStatus.SKIPPED):
        return old in (MessageStatus.PENDING, MessageStatus.QUEUED)
    if new in _FAILURES:
        return old in _NOT_YET_DELIVERED
    if new is MessageStatus.UNKNOWN:
        return _RANK[old] < _RANK[MessageStatus.UNKNOWN]
    return _RANK[new] > _RANK[old]


@cache
def predecessors(new: MessageStatus) -> tuple[MessageStatus, ...]:
    """Every status that ``new`` may replace, for a conditional UPDATE."""
    return tuple(old for old in MessageStatus if advances(old, new))


class BatchState(StrEnum):
    """One ``POST /messages``; its id is the request's ``refId``."""

    PENDING = "pending"
    SUBMITTING = "submitting"  # marked before the HTTP request leaves
    SUBMITTED = "submitted"
    REJECTED = "rejected"  # LINK refused the request; its messages failed
    IN_DOUBT = "in_doubt"  # no answer: settled by DLRs, never blindly resent
    SKIPPED = "skipped"  # nothing left to send when its turn came (all settled meanwhile)
    HELD = "held"  # beyond the messaging tier's 24-hour cap: pending from ``not_before``
    WAITING = "waiting"  # after a canary: pending once the canary is judged good (or resumed)


class CampaignState(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PREPARING = "preparing"
    SENDING = "sending"
    COMPLETED = "completed"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FAILED = "failed"
    PREVIEWED = "previewed"  # a dry run: prepared and stored, never sent


FINAL_CAMPAIGN_STATES = frozenset(
    {
        CampaignState.COMPLETED,
        CampaignState.CANCELLED,
        CampaignState.FAILED,
        CampaignState.PREVIEWED,
    }
)
