"""Text and location messages (seed 004 'Text message', 'Location message')."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dispatcher.messages.base import WireModel

# Meta's limit for a text message body; the seed documents no other.
TEXT_BODY_MAX_CHARS = 4096


class Text(WireModel):
    # Seed 004 'Text message': a URL in the body should start with http:// or https://
    # to be previewed; that is advice, not a rule LINK enforces, so it is not checked.
    body: str = Field(min_length=1, max_length=TEXT_BODY_MAX_CHARS)


class TextMessage(WireModel):
    type: Literal["text"] = "text"
    preview_url: bool | None = Field(default=None, alias="previewUrl")
    text: Text


class Location(WireModel):
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    name: str | None = None
    # Seed 004: the address "is only displayed if name is present"; allowed alone anyway.
    address: str | None = None


class LocationMessage(WireModel):
    type: Literal["location"] = "location"
    location: Location
