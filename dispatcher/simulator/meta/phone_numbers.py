"""A business phone number's Graph fields (``GET /{version}/{phone-number-id}``).

Meta's phone number reference names the fields; their values come from the same settings
as the LINK side's phone number information (level, tier, quality, health), so one
simulator describes a number alike through both APIs.
"""

from __future__ import annotations

from typing import Any

from dispatcher.simulator.core import Simulator
from dispatcher.simulator.meta.statuses import BusinessNumber
from dispatcher.simulator.phone_info import phone_number_info

# Graph's answer when no ``fields`` are asked for.
DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
)


def phone_number_fields(
    simulator: Simulator, number: BusinessNumber, wanted: list[str] | None
) -> dict[str, Any]:
    """The asked-for fields (unknown ones left out, as Graph leaves unset ones), plus ``id``."""
    config = simulator.config
    level = simulator.level_of(number.display)
    standing = simulator.standing_of(number.display)
    health = standing.health
    entity: dict[str, Any] = {
        "entity_type": "PHONE_NUMBER",
        "id": number.id,
        "can_send_message": health,
    }
    # The LINK side's document gives the same explanations for LIMITED and BLOCKED.
    link_info = phone_number_info(config, number.display, level, health, standing.quality)
    for key in ("additional_info", "errors"):
        if key in link_info:
            entity[key] = link_info[key]
    quality = standing.quality
    known: dict[str, Any] = {
        "display_phone_number": number.display,
        "verified_name": "Simulated Business",
        "code_verification_status": "VERIFIED",
        "quality_rating": "UNKNOWN" if quality == "NA" else quality,
        "messaging_limit_tier": config.messaging_tier,
        "throughput": {"level": level},
        "name_status": config.meta_name_status,
        "platform_type": "CLOUD_API",
        "status": "CONNECTED",
        "health_status": {"can_send_message": health, "entities": [entity]},
        "is_on_biz_app": number.on_biz_app,
    }
    fields = {name: known[name] for name in wanted or DEFAULT_FIELDS if name in known}
    fields["id"] = number.id
    return fields
