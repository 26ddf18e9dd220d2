"""Files people open: the rejects report and the per-recipient outcome report.

Formula safety (OWASP "CSV injection"): a spreadsheet runs a cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula, so such a cell is
prefixed with a quote (``'``) and a crafted value (``=HYPERLINK(...)``,
``+1+cmd|' /C calc'!A0``, ``-2+3``) is shown as text, never run. One shape is spared,
since it is the report's own data and must stay usable as it is: identifiers, that is
a phone number in E.164 (``+`` and digits), then any further phone numbers, digit
groups and BSUIDs (``CC.`` or ``CC.ENT.`` and letters or digits), separated by single
spaces: ``+4791234567``, ``+47 912 34 567``, ``+4791234567 NO.abc123``. Such a cell
names no function, no file and no other program (a BSUID read as a name or a sheet
reference points inside the document at most), so even read as a formula it cannot do
anything: at worst a spreadsheet shows a number or an error, and the CSV stays exact
for the scripts that read it. Everything else that starts with a formula character is
quoted.

Times are written in ISO 8601, in UTC with its offset, to the second
(``2026-12-02T04:25:28+00:00``), whichever database they came from.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from dispatcher.audience.recipients import Reject
from dispatcher.operations.shares import SharedNumber

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ASCII digits only: ``\d`` would take any script's digits.
_IDENTIFIERS = re.compile(
    r"\+[0-9]{1,15}(?: (?:\+?[0-9]{1,15}|[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}))*"
)


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas; identifiers like ``+4790000000 NO.abc123`` stay
    as they are (the rule is in the module's docstring)."""
    if value.startswith(_FORMULA_START) and not _IDENTIFIERS.fullmatch(value):
        return "'" + value
    return value


def report_time(moment: datetime) -> str:
    """ISO 8601 in UTC to the second. A time without a zone is UTC: SQLite hands them
    back so (PostgreSQL in the session's zone)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return report_time(value)
    return safe_cell(str(value))


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
    "skip_reason",  # why a ``skipped`` person was not sent (``status.SkipReason``)
    "whatsapp_message_id",  # WhatsApp's id of the latest attempt (waMessageId)
    "pricing_category",  # as the status reports say (marketing, utility, service...)
    "billable",
    "replies",  # incoming messages answering this person's message
    "reply_buttons",  # the buttons or list rows they chose, in order, once each
    # The phone number the person shared after the campaign started (a contacts
    # message, e.g. their answer to ask_for_number), whole as every number here, and
    # when the identity book learned it (``operations.shares``).
    "shared_number",
    "shared_at",
)
#: Where the shared number's columns start; the rows given stop before them.
_SHARED = OUTCOME_COLUMNS.index("shared_number")
#: The columns of a row ``progress.outcomes`` yields (the shared number is added here).
ROW_COLUMNS = OUTCOME_COLUMNS[:_SHARED]
#: The report's status of a row merged into an earlier one (``progress.MERGED``).
_MERGED = "merged"


def write_outcomes(
    handle: TextIO,
    rows: Iterable[Sequence[object]],
    shared: Iterable[SharedNumber] = (),
) -> int:
    """The per-recipient outcome CSV, in ``OUTCOME_COLUMNS`` order: one row per input
    line kept (its person's message) or merged into another (status ``merged``).
    ``shared`` (``shares.shared_numbers``) fills the shared number of the people who
    shared one, on their message's line."""
    by_destination = {share.destination: share for share in shared}
    writer = csv.writer(handle)
    writer.writerow(OUTCOME_COLUMNS)
    count = 0
    for row in rows:
        cells = [_cell(v) for v in row[:_SHARED]]
        cells += [""] * (_SHARED - len(cells))
        share = None if row[3] == _MERGED else by_destination.get(str(row[2]))
        cells += ["", ""] if share is None else [share.number, report_time(share.at)]
        writer.writerow(cells)
        count += 1
    return count
