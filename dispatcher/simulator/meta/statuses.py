"""Status webhooks of the Cloud API, as seed 002 ('Message Status Updates') and seed 000
('BSUID' status webhooks) show them.

The send path only records a :class:`StatusDelivery`; the body is rendered (and signed by
the callback dispatcher) when a status is due, as the LINK side's DLRs are. The fates are
the LINK side's :class:`~dispatcher.simulator.codes.Status` objects, whose failures carry
Meta's code in the description ("(#131026) Message undeliverable"); they are read back
into ``errors[]`` here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dispatcher.simulator.codes import DELIVERED, READ, SENT, Status
from dispatcher.simulator.identity import Kind, Person

_NAMES = {SENT: "sent", DELIVERED: "delivered", READ: "read"}
_CODE_RE = re.compile(r"\(#(\d+)\)\s*(.*)")
# Seed 002 'Status: Message Undeliverable': the error code reference every error links to.
_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
_UNKNOWN_ERROR = (131000, "Something went wrong")
_CARE_WINDOW_SECONDS = 24 * 3600
# Seed 000's delivered example: per-message pricing of a template; free-form messages go out
# in the customer service window and are not billed (Meta's pricing reference).
_SERVICE_PRICING = {
    "billable": False,
    "pricing_model": "PMP",
    "type": "free_customer_service",
    "category": "service",
}


def whatsapp_error(status: Status) -> tuple[int, str]:
    """Meta's code and title behind a failure: from "(#code) title", else 131000."""
    found = _CODE_RE.match(status.description)
    return (int(found[1]), found[2] or "Message failed") if found else _UNKNOWN_ERROR


_ERRORS: dict[Status, list[dict[str, Any]]] = {}


def _errors(status: Status) -> list[dict[str, Any]]:
    """Seed 002 'Status: Message Undeliverable' ``errors[]``, built once per fate."""
    errors = _ERRORS.get(status)
    if errors is None:
        code, title = whatsapp_error(status)
        details = status.meta_error or title
        errors = _ERRORS[status] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": details},
                "href": _HREF,
            }
        ]
    return errors


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class BusinessNumber:
    """A configured business phone number: its id and display number (``+digits``)."""

    id: str
    display: str
    waba_id: str
    on_biz_app: bool = False  # also in the WhatsApp Business app: 20 messages a second

    @property
    def envelope(self) -> tuple[bytes, bytes]:
        """Seed 002's ``whatsapp_business_account`` body around a ``value``'s last members:
        what precedes them and what follows. The display number as digits, no '+'."""
        metadata = {"display_phone_number": self.display[1:], "phone_number_id": self.id}
        head = (
            b'{"object":"whatsapp_business_account","entry":[{"id":%s,"changes":[{"value":'
            b'{"messaging_product":"whatsapp","metadata":%s,'
            % (_json(self.waba_id), _json(metadata))
        )
        return head, b'},"field":"messages"}]}]}'


@dataclass(slots=True)
class StatusDelivery:
    """One sent message and the statuses it will go through.

    Rendering is the simulator's main cost under load (three webhooks per send), so the
    parts that never change are encoded once: the envelope per number, the contact per
    message; only the status entry is encoded per webhook.
    """

    wamid: str
    number: BusinessNumber
    envelope: tuple[bytes, bytes]
    person: Person
    kind: Kind  # how the send addressed the person: phone number, BSUID or parent BSUID
    addressed: str  # the canonical identifier it used
    opaque: str | None
    statuses: tuple[Status, ...]
    category: str | None  # a template's pricing category; None for free-form messages
    parents: bool  # whether parent BSUIDs are enabled (seed 000)
    contacts: bytes = b""

    def render(self, status: Status) -> bytes:
        """The webhook body for one status, stamped now."""
        now = int(time.time())
        name = _NAMES.get(status, "failed")
        person = self.person
        by_phone = self.kind is Kind.MSISDN
        entry: dict[str, Any] = {"id": self.wamid, "status": name, "timestamp": str(now)}
        # Seed 000: recipient_id only for a send to the phone number (BSUID-only otherwise);
        # recipient_user_id the BSUID, or the BSUID or parent BSUID the send used.
        if by_phone:
            entry["recipient_id"] = self.addressed[1:]
        entry["recipient_user_id"] = person.user_id if by_phone else self.addressed
        if self.parents:
            entry["parent_recipient_user_id"] = person.parent_id
        if self.opaque is not None:
            entry["biz_opaque_callback_data"] = self.opaque
        head, tail = self.envelope
        if name == "failed":
            # Seed 000: no contacts[] in a failed status's webhook.
            entry["errors"] = _errors(status)
            return head + b'"statuses":[' + _json(entry) + b"]" + tail
        if name != "read":
            entry["conversation"], entry["pricing"] = self._charge(now)
        if not self.contacts:
            self.contacts = self._contact()
        return head + self.contacts + b'"statuses":[' + _json(entry) + b"]" + tail

    def _contact(self) -> bytes:
        """Seed 000's ``contacts[]`` of sent, delivered and read statuses."""
        person = self.person
        contact: dict[str, Any] = {"profile": {"name": "WhatsApp User"}}
        if self.kind is Kind.MSISDN:
            contact["wa_id"] = self.addressed[1:]
        contact["user_id"] = person.user_id
        if self.parents:
            contact["parent_user_id"] = person.parent_id
        return b'"contacts":[' + _json(contact) + b"],"

    def _charge(self, now: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Seed 002's ``conversation`` and seed 000's ``pricing`` of a sent/delivered status."""
        if self.category is None:
            pricing = _SERVICE_PRICING
        else:
            pricing = {"billable": True, "pricing_model": "PMP", "type": "regular",
                       "category": self.category}  # fmt: skip
        digest = hashlib.blake2b(f"{self.number.id}/{self.person.user_id}".encode(), digest_size=16)
        conversation = {
            "id": digest.hexdigest(),
            "expiration_timestamp": str(now + _CARE_WINDOW_SECONDS),
            "origin": {"type": pricing["category"]},
        }
        return conversation, pricing


def signer(app_secret: str) -> Callable[[bytes], bytes]:
    """The ``X-Hub-Signature-256`` header line for a body (Meta's webhook reference:
    ``sha256=`` + hex HMAC-SHA256 of the raw body with the app secret)."""
    key = app_secret.encode()

    def sign(body: bytes) -> bytes:
        digest = hmac.new(key, body, hashlib.sha256).hexdigest()
        return b"X-Hub-Signature-256: sha256=" + digest.encode() + b"\r\n"

    return sign
