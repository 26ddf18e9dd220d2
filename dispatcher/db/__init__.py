"""Storage: tables, engine/session set-up and migrations."""

from dispatcher.db.models import (
    Alert,
    ApiKey,
    AuditEvent,
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
    RetiredIdentity,
    Schedule,
    Suppression,
    WhatsAppMessageId,
)
from dispatcher.db.session import Database, migrate

__all__ = [
    "Alert",
    "ApiKey",
    "AuditEvent",
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
    "RetiredIdentity",
    "Schedule",
    "Suppression",
    "WhatsAppMessageId",
    "migrate",
]
