"""Storage: tables, engine/session set-up and migrations."""

from dispatcher.db.models import (
    Base,
    Batch,
    Campaign,
    CareWindow,
    DeliveryReport,
    Identity,
    Media,
    MergedRow,
    Message,
    Reply,
    Schedule,
    Suppression,
    WhatsAppMessageId,
)
from dispatcher.db.session import Database, migrate

__all__ = [
    "Base",
    "Batch",
    "Campaign",
    "CareWindow",
    "Database",
    "DeliveryReport",
    "Identity",
    "Media",
    "MergedRow",
    "Message",
    "Reply",
    "Schedule",
    "Suppression",
    "WhatsAppMessageId",
    "migrate",
]
