"""Body of the seed's 'Phone number information API' for a configured sender."""

from __future__ import annotations

import hashlib
from typing import Any

from dispatcher.simulator.config import SimulatorConfig

# Seed 'Phone number information API': LIMITED adds ``additional_info``, BLOCKED adds ``errors``.
_ADDITIONAL_INFO = [
    "Your display name has not been approved yet. Your message limit will increase after "
    "the display name is approved.",
]
_ERRORS = [
    {
        "error_code": 141002,
        "error_description": "Message templates can only be sent out if they are approved.",
        "possible_solution": "Edit or appeal the message template review decision.",
    },
]


def _stable_number(text: str, salt: bytes) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=salt).digest()
    return str(10**14 + int.from_bytes(digest, "big") % (9 * 10**14))


def phone_number_info(
    config: SimulatorConfig,
    source: str,
    level: str,
    health: str | None = None,
    quality: str | None = None,
) -> dict[str, Any]:
    """The answer for ``source``: its ``health`` and ``quality`` rating as given (the
    simulator's current standing of the number), else the config's."""
    status = health or config.health_status
    info: dict[str, Any] = {
        "wabaId": _stable_number(source, b"waba"),
        "overallHealthStatus": status,
        "level": level,
        "numberCanSendMessages": status,
        "maxDailyConversations": config.messaging_tier,
        "verifiedName": "LINK Simulator",
        "qualityRating": quality or config.quality_rating,
        "phoneNumberId": _stable_number(source, b"phone-number"),
    }
    if status == "LIMITED":
        info["additional_info"] = list(_ADDITIONAL_INFO)
    elif status == "BLOCKED":
        info["errors"] = [dict(error) for error in _ERRORS]
    return info
