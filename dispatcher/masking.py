"""Identifiers as logs and screens may show them: enough to recognise, not to dial."""

from __future__ import annotations


def mask(identifier: str) -> str:
    """``+4791234567`` -> ``+479•••••67``; ``NO.abc123xyz`` -> ``NO.•••xyz``."""
    if identifier.startswith("+"):
        keep = min(4, max(len(identifier) - 6, 1))
        return identifier[:keep] + "•" * (len(identifier) - keep - 2) + identifier[-2:]
    prefix, _, rest = identifier.rpartition(".")
    if prefix:
        return f"{prefix}.•••{rest[-3:]}" if len(rest) > 3 else f"{prefix}.•••"
    return "•••" + identifier[-2:] if len(identifier) > 4 else "•••"
