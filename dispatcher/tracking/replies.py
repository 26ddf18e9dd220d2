"""Replies to a campaign: an incoming message whose context names one of its messages.

Seed 004 'Incoming Messages': ``content.message.context.id`` is "the message id (from
META) of the original message", the ``customParameters.waMessageId`` of that message's
status reports. The applier keeps every such id with its message
(``WhatsAppMessageId``), so a reply to an attempt before a resend still counts. A
button or list choice is kept with the reply: the campaign's status counts them by
button.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from dispatcher.db.bulk import insert_ignoring_duplicates
from dispatcher.db.models import Reply, WhatsAppMessageId
from dispatcher.db.timestamps import aware
from dispatcher.providers import IncomingReport

_REPLIES: Table = Reply.__table__  # type: ignore[assignment]
_KIND_CHARS = 16
_ID_CHARS = 128


def record(session: Session, report_id: int, message: IncomingReport) -> bool:
    """Count the message as a reply to the campaign whose message it answers; returns
    True when it answers one of ours. A body delivered twice counts once."""
    context = message.reply_context
    if context is None:
        return False
    answered = session.execute(
        select(WhatsAppMessageId.message_id, WhatsAppMessageId.campaign_id).where(
            WhatsAppMessageId.wa_message_id == context.wa_message_id
        )
    ).first()
    if answered is None:
        return False
    own_id = message.message_id
    incoming_id = own_id if own_id and len(own_id) <= _ID_CHARS else f"report {report_id}"
    insert_ignoring_duplicates(
        session,
        _REPLIES,
        [
            {
                "campaign_id": answered.campaign_id,
                "message_id": answered.message_id,
                "incoming_id": incoming_id,
                "kind": context.kind[:_KIND_CHARS],
                "button": context.button,
                "label": context.label,
                "received_at": aware(message.timestamp) or datetime.now(UTC),
            }
        ],
    )
    return True


def button_label(button: str | None, label: str | None) -> str:
    """How a choice is shown: its text, with its payload or id when that differs."""
    if label and button and label != button:
        return f"{label} [{button}]"
    return label or button or ""
