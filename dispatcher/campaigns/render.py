"""Per-recipient text: ``{column}`` placeholders filled from the recipient's CSV row.

Deliberately tiny and safe: only ``{name}`` look-ups (no attribute access, no format
specs), ``{{`` and ``}}`` for literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingValue(KeyError):
    """The row has no value for a placeholder the message needs."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


def placeholders(text: str) -> set[str]:
    """Column names a text refers to."""
    return {m.group(1) for m in _TOKEN.finditer(text) if m.group(1)}


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill placeholders; an empty or absent value raises ``MissingValue``."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        column = match.group(1)
        value = values.get(column, "")
        if not value:
            raise MissingValue(column)
        return value

    return _TOKEN.sub(substitute, text)
