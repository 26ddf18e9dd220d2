"""Recipient files as CRMs and spreadsheets really produce them (tests/fixtures/messy)."""

from __future__ import annotations

from dispatcher.audience.identity import Person
from dispatcher.audience.passes import Audience
from tests.conftest import ROOT

MESSY = ROOT / "tests" / "fixtures" / "messy"


def test_an_excel_export_and_a_crm_export_resolve_into_people_and_rejects() -> None:
    files = [MESSY / "excel-semicolon.csv", MESSY / "crm-export.csv"]
    with Audience(files, "NO") as audience:
        audience.scan()
        people = [p for p in audience.people() if isinstance(p, Person)]
        rejects = [(r.file.name, r.line, r.reason) for r in audience.rejects([])]
    assert [(p.first.file.name, p.first.line, p.identifiers) for p in people] == [
        # BOM, ';' with a quoted ';' inside a field, Excel's scientific notation
        ("excel-semicolon.csv", 2, ["+4791234567"]),
        ("excel-semicolon.csv", 3, ["+4791234568"]),  # '+' stripped, spaces
        ("excel-semicolon.csv", 4, ["+4791234569"]),  # 0047 and dashes
        ("excel-semicolon.csv", 5, ["+4791234570"]),  # national, country column
        ("excel-semicolon.csv", 6, ["+46701234567"]),  # national Swedish, lower-case 'se'
        ("excel-semicolon.csv", 11, ["+4791234571"]),  # parentheses
        # one person over three rows: number + BSUID, BSUID + parent, parent alone
        (
            "crm-export.csv",
            2,
            ["+4791234580", "NO.13491208655302741918", "NO.ENT.11815799212886844830"],
        ),
    ]
    assert people[1].first.values["store"] == "Bergen; sentrum"
    assert people[-1].first.values["name"] == "Lund, Kari"
    assert audience.duplicates == 3  # Åse again (line 12), Kari's second and third rows
    assert rejects == [
        (
            "excel-semicolon.csv",
            7,
            "number in scientific notation (e.g. 4.67E+10) lost "
            "digits or is invalid: format the column as text in the spreadsheet",
        ),
        ("excel-semicolon.csv", 8, "invalid phone number"),
        ("excel-semicolon.csv", 9, "empty: no phone number or BSUID"),
        ("excel-semicolon.csv", 13, "invalid phone number"),
        ("crm-export.csv", 5, "malformed BSUID (expected CC.<id>)"),
        ("crm-export.csv", 6, "malformed parent BSUID (expected CC.ENT.<id>)"),
        ("crm-export.csv", 7, "a field spans lines 7-8 (a quote left open?)"),
    ]
    assert audience.loaded == len(people) + audience.duplicates + len(rejects)
