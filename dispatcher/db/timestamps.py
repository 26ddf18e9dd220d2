"""Timestamps as the code compares them: aware, in UTC.

SQLite hands timestamps back without their zone (the project stores every one in UTC);
PostgreSQL hands them back with it. A report's time written without an offset is
taken as UTC too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """``moment`` with its zone: UTC when it came without one."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
