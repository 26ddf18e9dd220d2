"""Files people open: the rejects report and the per-recipient outcome report.

Cells that a spreadsheet would run as a formula are prefixed with a quote, so a
crafted CSV value cannot execute when the report is opened.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from dispatcher.recipients import Reject

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas; phone numbers like +4790000000 stay readable."""
    if value.startswith(_FORMULA_START) and not value.lstrip("+").replace(" ", "").isdigit():
        return "'" + value
    return value


def write_rejects(
    path: Path, rejects: Iterable[Reject], columns: Sequence[str] | None = None
) -> int:
    """Write the rejects CSV (file, line, reason, then the rows' own columns); returns
    how many. ``columns`` (every file's header) lets it stream; else it is collected."""
    if columns is None:
        rejects = list(rejects)
        found: list[str] = []
        for reject in rejects:
            found.extend(c for c in reject.raw if c not in found)
        columns = found
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "line", "reason", *columns])
        for reject in rejects:
            count += 1
            writer.writerow(
                [
                    reject.file.name,
                    reject.line,
                    safe_cell(reject.reason),
                    *(safe_cell(reject.raw.get(c, "")) for c in columns),
                ]
            )
    return count


OUTCOME_COLUMNS = (
    "line",
    "identifiers",
    "destination",
    "status",
    "attempts",
    "retry_class",
    "result_code",
    "whatsapp_error_code",
    "result_description",
    "batch",
    "message_id",
    "submitted_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
)


def write_outcomes(handle: TextIO, rows: Iterable[Sequence[object]]) -> int:
    """The per-recipient outcome CSV: one row per person, in ``OUTCOME_COLUMNS`` order."""
    writer = csv.writer(handle)
    writer.writerow(OUTCOME_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([safe_cell("" if v is None else str(v)) for v in row])
        count += 1
    return count
