"""Message status notifications (DLRs) as the seed's 'Callbacks / Webhooks' section shows them.

The accept path only records a :class:`Delivery`; the JSON is rendered by the callback workers
when a status is due, which keeps ``POST /messages`` cheap.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from dispatcher.simulator.codes import Status
from dispatcher.simulator.identity import Person
from dispatcher.simulator.validation import ParsedMessage, ParsedRequest

# Seed DLR Example#1: the pricing fields LINK adds to customParameters of a sent message.
_TEMPLATE_PRICING = {
    "pricingModel": "PMP",
    "pricingCategory": "marketing",
    "pricingBillable": "true",
    "pricingType": "regular",
}
# Free-form messages only go out in the 24 hour customer care window (seed 'Message type').
_SESSION_PRICING = {
    "pricingModel": "PMP",
    "pricingCategory": "service",
    "pricingBillable": "false",
    "pricingType": "free_customer_service",
}


@dataclass(slots=True)
class Delivery:
    """One WhatsApp message (a destination times an entry of ``messages``) and its fate."""

    request: ParsedRequest
    message: ParsedMessage
    index: int
    message_id: str
    person: Person
    statuses: tuple[Status, ...]
    #: a template's category (``TemplateBook.category``): its DLRs' ``pricingCategory``
    category: str | None = None

    def render(self, status: Status) -> bytes:
        """The DLR JSON for one status, stamped now (seed 'DLR JSON Structure')."""
        request = self.request
        custom: dict[str, Any] = dict(request.custom_parameters)
        if status.failed:
            # Seed DLR Example#4: failures carry Meta's explanation, no pricing.
            if status.meta_error:
                custom["metaErrorDetails"] = status.meta_error
        else:
            custom.update(_TEMPLATE_PRICING if self.message.is_template else _SESSION_PRICING)
            if self.message.is_template and self.category:
                custom["pricingCategory"] = self.category
            custom["platformId"] = request.platform_id
            custom["platformPartnerId"] = request.platform_partner_id
            custom["waMessageId"] = self._wa_message_id()
        # Seed 'BSUID - Message Status Notifications - DLRs (MT) updates': the MSISDN as
        # ``destination`` when known (sent to it, or in the contact book), plus both BSUIDs.
        person = self.person
        if person.msisdn:
            custom["destination"] = person.msisdn
        custom["whatsappUserId"] = person.user_id
        custom["whatsappParentUserId"] = person.parent_id
        return json.dumps(
            {
                "messageId": self.message_id,
                "refId": request.ref_id,
                "messageType": self.message.dlr_type,
                "messageIndex": self.index,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "resultCode": status.code,
                "resultDescription": status.description,
                "gateCustomParameters": {},
                "customParameters": custom,
            }
        ).encode()

    def _wa_message_id(self) -> str:
        digest = hashlib.blake2b(f"{self.message_id}/{self.index}".encode(), digest_size=30)
        return "wamid." + base64.b64encode(digest.digest()).decode()
