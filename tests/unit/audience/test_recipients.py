from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.audience.recipients import Reject, Row, normalise_msisdn, read_recipients
from dispatcher.errors import RecipientsError


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+4791234567", None, "+4791234567"),
        ("004791234567", None, "+4791234567"),
        ("4791234567", None, "+4791234567"),  # '+' lost in a spreadsheet
        ("+47 912 34 567", None, "+4791234567"),
        ("(+47) 912-34-567", None, "+4791234567"),
        ("4.791234567E+09", None, "+4791234567"),  # Excel scientific notation
        ("4.6701234E+10", None, None),  # ...that lost its last digits: not a guess
        ("91234567", "NO", "+4791234567"),  # national number with a region
        ("070-123 45 67", "SE", "+46701234567"),
        ("12345", "NO", None),
        ("call me", None, None),
        ("", "NO", None),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, region: str | None, expected: str | None) -> None:
    assert normalise_msisdn(raw, region) == expected


def load(tmp_path: Path, content: str, region: str | None = "NO") -> list[Row | Reject]:
    path = tmp_path / "people.csv"
    path.write_text(content, encoding="utf-8-sig")
    return list(read_recipients(path, region))


def test_rows_and_rejects_carry_their_line_numbers(tmp_path: Path) -> None:
    items = load(tmp_path, "phone,name\n+4791234567,Ada\n12,Bob\n\n,Cy\n+4791234568,Di\n")
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Row", 2),
        ("Reject", 3),
        ("Reject", 5),
        ("Row", 6),
    ]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert rejects[0].reason == "invalid phone number"
    assert rejects[1].reason.startswith("empty")


def test_semicolon_csv_with_bom_and_odd_headers_is_read(tmp_path: Path) -> None:
    (row,) = load(tmp_path, "Mobile Number;First Name\n+46701234567;Åsa\n")
    assert isinstance(row, Row)
    assert row.msisdn == "+46701234567"
    assert row.values["first_name"] == "Åsa"


def test_an_open_quote_is_rejected_with_the_lines_it_swallowed(tmp_path: Path) -> None:
    items = load(tmp_path, 'phone,name\n+4791234561,"Anna\n+4791234562,Bob\n+4791234563,"\nbad,x\n')
    assert isinstance(items[0], Reject)
    assert (items[0].line, items[0].reason) == (2, "a field spans lines 2-4 (a quote left open?)")
    assert [(type(i).__name__, i.line) for i in items[1:]] == [("Reject", 5)]


def test_bsuid_and_parent_bsuid_are_recognised(tmp_path: Path) -> None:
    (row, bad) = load(
        tmp_path,
        "bsuid,parent_bsuid\nSE.13491208655302741918,SE.ENT.11815799212886844830\nSE-123,\n",
    )
    assert isinstance(row, Row)
    assert row.bsuid == "SE.13491208655302741918"
    assert row.parent_bsuid == "SE.ENT.11815799212886844830"
    assert isinstance(bad, Reject)
    assert "malformed BSUID" in bad.reason


def test_a_row_with_too_many_fields_is_rejected(tmp_path: Path) -> None:
    (item,) = load(tmp_path, "phone,name\n+4791234567,Ada,extra\n")
    assert isinstance(item, Reject)
    assert "3 fields" in item.reason


def test_a_file_without_a_recipient_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipientsError, match="no recipient column"):
        load(tmp_path, "name,email\nAda,a@example.com\n")


def test_a_doubled_quote_inside_a_quoted_field_is_one_quote_in_crlf_files(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b'phone,note\r\n+4791234567,"say ""hi"", then go"\r\n')
    (row,) = read_recipients(path, "NO")
    assert isinstance(row, Row)
    assert row.values["note"] == 'say "hi", then go'


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("rows_before", [2, 20_000], ids=["small", "past-the-first-chunk"])
def test_a_file_that_stops_being_utf8_is_refused_naming_the_line(
    tmp_path: Path, end: bytes, rows_before: int
) -> None:
    """Rejecting the rest would drop people without a word; refusing loses nothing."""
    rows = [b"phone,name"] + [b"+4791234567,\xc3\x85se"] * rows_before + [b"+4791234568,Ren\xe9"]
    path = tmp_path / "latin1.csv"
    path.write_bytes(end.join([*rows, b""]))
    with pytest.raises(RecipientsError, match=rf"line {rows_before + 2} is not UTF-8 .*0xe9"):
        list(read_recipients(path))
