"""LINK Mobility WhatsApp Message API as a ``Provider``: wire models, result codes,
callbacks read into reports, and the HTTP client.

The names below load on first use: the client pulls in httpx and httptools, which a
command that only reads the database does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.providers.link.client import LinkClient, LinkCredentials
    from dispatcher.providers.link.models import (
        DeliveryReport,
        IncomingMessage,
        Level,
        MessageRequest,
        MessageResponse,
        PhoneNumberInfo,
        Priority,
    )

_WHERE = {
    "LinkClient": "client",
    "LinkCredentials": "client",
    "DeliveryReport": "models",
    "IncomingMessage": "models",
    "Level": "models",
    "MessageRequest": "models",
    "MessageResponse": "models",
    "PhoneNumberInfo": "models",
    "Priority": "models",
}
__all__ = [
    "DeliveryReport",
    "IncomingMessage",
    "Level",
    "LinkClient",
    "LinkCredentials",
    "MessageRequest",
    "MessageResponse",
    "PhoneNumberInfo",
    "Priority",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dispatcher.providers.link' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dispatcher.providers.link.{_WHERE[name]}"), name)
