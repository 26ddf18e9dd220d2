"""Wire models of the LINK WhatsApp Message API (seed 004), camelCase on the wire.

Only the envelope lives here; message bodies are in ``dispatcher.messages``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Priority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"


class Level(StrEnum):
    """Phone number throughput level (seed 004 'Phone number information API')."""

    STANDARD = "STANDARD"
    HIGH = "HIGH"
    UNKNOWN = "UNKNOWN"

    @property
    def messages_per_second(self) -> int:
        # Seed 004: STANDARD = 80 messages per second, HIGH = 1000.
        return 1000 if self is Level.HIGH else 80

    @classmethod
    def _missing_(cls, value: object) -> Level:
        return cls.UNKNOWN


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="allow",
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class MessageRequest(_Wire):
    """``POST /messages`` body: every field of the seed's MessageRequest table."""

    model_config = ConfigDict(extra="forbid")

    platform_id: str
    platform_partner_id: str
    platform_service_id: str | None = None
    platform_service_type: str | None = None
    platform_transaction_id: str | None = None
    priority: Priority = Priority.NORMAL
    relative_validity_time: int | None = Field(default=None, description="milliseconds")
    absolute_validity_time: datetime | None = None
    event_report_gates: list[str] | None = None
    ref_id: str
    custom_parameters: dict[str, Any] | None = None
    source: str
    destinations: list[str] = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)


class MessageResponse(_Wire):
    result_code: int
    description: str | None = None
    message_ids: list[str] = Field(default_factory=list)


class ErrorResponse(_Wire):
    result_code: int | None = None
    description: str | None = None
    translated_description: str | None = None


class MediaErrorResponse(_Wire):
    status: int | None = None
    description: str | None = None
    translated_description: str | None = None


class DeliveryReport(_Wire):
    """A Message Status Notification (one callback = one message)."""

    message_id: str | None = None
    ref_id: str | None = None
    message_type: str | None = None
    message_index: int | None = None
    timestamp: datetime | None = None
    result_code: int
    result_description: str | None = None
    gate_custom_parameters: dict[str, Any] | None = None
    custom_parameters: dict[str, Any] | None = None

    @property
    def is_request_failure(self) -> bool:
        """Seed 004: a failed request (nothing sent) has type "request" / index -1."""
        return self.message_type == "request" or self.message_index == -1


class IncomingMessage(_Wire):
    """An incoming (MO) message; only what identity learning and opt-outs need."""

    destination: str | None = None
    source: str
    content: dict[str, Any] | None = None
    message_id: str | None = None
    timestamp: datetime | None = None
    custom_parameters: dict[str, Any] | None = None


class PhoneNumberInfo(_Wire):
    """Phone number information API answer."""

    waba_id: str | None = None
    overall_health_status: str | None = None
    level: Level = Level.UNKNOWN
    number_can_send_messages: str | None = None
    max_daily_conversations: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    phone_number_id: str | None = None
    additional_info: list[str] | None = Field(default=None, alias="additional_info")
    errors: list[dict[str, Any]] | None = None
