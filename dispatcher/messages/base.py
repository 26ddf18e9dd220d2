"""What every LINK message body shares: strict keys, one wire dump, errors at the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]

# Seed 004 'Image message' (and Audio, Video, Document, Sticker): a hosted link
# "Begins with http:// or https://".
HTTP_SCHEMES = ("http://", "https://")


class WireModel(BaseModel):
    """A part of a message, named on the wire exactly as seed 004 names it.

    Unknown keys are errors: a typo in a campaign file must stop the campaign, not
    reach LINK as a silently ignored field.
    """

    model_config = ConfigDict(extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON body LINK expects: seed spellings, no ``null`` fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def rule_error(loc: Loc, message: str, value: Any = None) -> ValidationError:
    """A rule broken at ``loc`` (relative to the model raising it).

    pydantic places a model validator's errors on the model itself; raising this
    instead lets the error path name the field the rule is about.
    """
    return rule_errors([(loc, message, value)])


def rule_errors(problems: Iterable[tuple[Loc, str, Any]]) -> ValidationError:
    """Several broken rules at once, each at its own field."""
    return ValidationError.from_exception_data(
        "message",
        [
            InitErrorDetails(
                # The text goes in the context so braces in it are never read as fields.
                type=PydanticCustomError("message_rule", "{rule}", {"rule": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in problems
        ],
    )


def first_duplicate(values: Iterable[Any]) -> int | None:
    """The position of the first value seen before, or None when all differ."""
    seen: set[Any] = set()
    for position, value in enumerate(values):
        if value in seen:
            return position
        seen.add(value)
    return None


def check_http_link(link: str | None) -> str | None:
    """A hosted media link must be an http(s) URL (seed 004 'Image message')."""
    if link is not None and not link.startswith(HTTP_SCHEMES):
        raise ValueError("a media link begins with http:// or https://")
    return link
