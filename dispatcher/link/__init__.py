"""LINK Mobility WhatsApp Message API: wire models, result codes and the HTTP client."""

from dispatcher.link.client import LinkClient, LinkCredentials
from dispatcher.link.models import (
    DeliveryReport,
    IncomingMessage,
    Level,
    MessageRequest,
    MessageResponse,
    PhoneNumberInfo,
    Priority,
)

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
