"""One recipient's message, and the key that groups identical ones into a batch.

Recipients whose composed messages are identical can share one request's
``destinations``; ``content_key`` is what groups them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from dispatcher.campaigns import message_spec
from dispatcher.campaigns.spec import CampaignSpec


def compose(
    spec: CampaignSpec, values: Mapping[str, str], media_ids: Mapping[str, str]
) -> dict[str, Any]:
    """The wire form of the campaign message for one recipient.

    Empty cells take the spec's ``defaults``. Raises ``render.MissingValue`` when a
    needed value is still empty, ``message_spec.InvalidMessage`` when the rendered
    message breaks a documented rule (e.g. a value longer than a limit).
    """
    if spec.defaults:
        values = {**values, **{k: v for k, v in spec.defaults.items() if not values.get(k)}}
    return message_spec.build(spec.message, values, media_ids)


def content_key(message: Mapping[str, Any]) -> str:
    """A stable digest of a composed message, for grouping identical content."""
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
