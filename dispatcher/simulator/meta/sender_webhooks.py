"""Webhooks about the business itself, as Meta sends them when its standing changes
(Meta's webhook reference; the seeds are silent on these fields):

* ``message_template_status_update``: a template's new status (``event``: APPROVED,
  PAUSED, DISABLED, ...), with its id, name and language;
* ``phone_number_quality_update``: a number FLAGGED when its quality rating drops to
  low (RED), UNFLAGGED when it recovers, with its messaging limit;
* ``account_update``: DISABLED_UPDATE with ``ban_info.waba_ban_state`` DISABLE when the
  account is disabled (the simulator's BLOCKED), REINSTATE when it is not any more.

Each body is one change of one entry (the WhatsApp Business Account), signed and
retried like the status webhooks. Meta sends no webhook for other rating changes
(GREEN to YELLOW) nor for LIMITED: those are read from the phone number's fields.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from dispatcher.simulator.codes import SENT, Status

# Meta's reference, ``other_info`` of a paused template: a first pause lasts 3 hours.
_FIRST_PAUSE = {
    "title": "FIRST_PAUSE",
    "description": "Your WhatsApp message template has been paused for 3 hours until "
    "{date} due to low quality.",
}


@dataclass(slots=True)
class SenderWebhook:
    """One body to post once (the callback dispatcher's ``Report``: a single step)."""

    body: bytes
    statuses: tuple[Status, ...] = field(default=(SENT,))

    def render(self, status: Status) -> bytes:
        return self.body


def _envelope(waba_id: str, field_name: str, value: dict[str, Any]) -> bytes:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": int(time.time()),
                "changes": [{"value": value, "field": field_name}],
            }
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def template_status(waba_id: str, template: dict[str, Any]) -> bytes:
    """``message_template_status_update`` for a template's status as it now is."""
    status = str(template["status"])
    value: dict[str, Any] = {
        "event": status,
        "message_template_id": int(template["id"]),
        "message_template_name": template["name"],
        "message_template_language": template["language"],
        "reason": None,
    }
    if template.get("category"):
        value["message_template_category"] = template["category"]
    if status == "PAUSED":
        until = time.strftime("%B %d, %Y", time.gmtime(time.time() + 3 * 3600))
        value["other_info"] = {
            "title": _FIRST_PAUSE["title"],
            "description": _FIRST_PAUSE["description"].format(date=until),
        }
    if status == "DISABLED":
        value["disable_info"] = {"disable_date": int(time.time())}
    return _envelope(waba_id, "message_template_status_update", value)


def quality_update(waba_id: str, display: str, event: str, tier: str) -> bytes:
    """``phone_number_quality_update`` of a number (``display``: E.164)."""
    value = {
        "display_phone_number": display.lstrip("+"),
        "event": event,
        "current_limit": tier,
        "max_daily_conversations_per_business": tier,
    }
    return _envelope(waba_id, "phone_number_quality_update", value)


def account_ban(waba_id: str, state: str) -> bytes:
    """``account_update`` DISABLED_UPDATE with the account's ban state (DISABLE,
    REINSTATE)."""
    value = {
        "event": "DISABLED_UPDATE",
        "ban_info": {
            "waba_ban_state": state,
            "waba_ban_date": time.strftime("%B %d, %Y", time.gmtime()),
        },
    }
    return _envelope(waba_id, "account_update", value)


def quality_event(old: str, new: str) -> str | None:
    """The quality webhook's event for a rating change, or None when Meta sends none."""
    if new == "RED" and old != "RED":
        return "FLAGGED"
    if old == "RED" and new != "RED":
        return "UNFLAGGED"
    return None


def ban_state(old: str, new: str) -> str | None:
    """The account's ban state for a health change, or None when Meta says nothing."""
    if new == "BLOCKED" and old != "BLOCKED":
        return "DISABLE"
    if old == "BLOCKED" and new != "BLOCKED":
        return "REINSTATE"
    return None
