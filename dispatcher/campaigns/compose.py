"""One recipient's message, and the key that groups identical ones into a batch.

Recipients whose composed messages are identical can share one request's
``destinations``; ``content_key`` is what groups them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

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
    return composer(spec, media_ids)(values)


def composer(
    spec: CampaignSpec, media_ids: Mapping[str, str]
) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    """``compose`` for one campaign, prepared once for all its recipients: the parts of
    the message that name no column are rendered once (``message_spec.renderer``);
    every recipient's message is still validated whole."""
    render = message_spec.renderer(spec.message, media_ids)
    defaults = spec.defaults

    def composed(values: Mapping[str, str]) -> dict[str, Any]:
        if defaults:
            values = {**values, **{k: v for k, v in defaults.items() if not values.get(k)}}
        return message_spec.validated(render(values))

    return composed


def content_key(message: Mapping[str, Any]) -> str:
    """A stable digest of a composed message, for grouping identical content."""
    return hashlib.sha256(json_bytes(message, sort_keys=True)).hexdigest()[:32]


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (orjson; json for an integer past 64 bits, which orjson
    refuses)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
        return text.encode()
