"""The two-pass audience: one destination per person, whatever identifiers the rows use."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.audience.identity import Person
from dispatcher.audience.passes import SUPPRESSED, Audience
from dispatcher.audience.recipients import Reject, normalise_msisdn
from dispatcher.errors import RecipientsError


@dataclass(frozen=True)
class Someone:
    msisdn: str
    bsuid: str | None
    parent: str | None

    @property
    def identifiers(self) -> set[str]:
        return {i for i in (self.msisdn, self.bsuid, self.parent) if i}


def _valid(number: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(number, None))


# Mobile ranges of three regions; the strategy keeps only numbers the library accepts.
numbers = st.one_of(
    st.from_regex(r"\+479[0-9]{7}", fullmatch=True),
    st.from_regex(r"\+4670[0-9]{7}", fullmatch=True),
    st.from_regex(r"\+49151[0-9]{8}", fullmatch=True),
).filter(_valid)
tokens = st.text(
    "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=6, max_size=20
)


@st.composite
def someone(draw: st.DrawFn) -> Someone:
    number = draw(numbers)
    region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    bsuid = f"{region}.{draw(tokens)}" if draw(st.booleans()) else None
    parent = f"{region}.ENT.{draw(tokens)}" if draw(st.booleans()) else None
    return Someone(number, bsuid, parent)


@st.composite
def phone_cell(draw: st.DrawFn, number: str) -> tuple[str, str]:
    """``(phone, country)`` the way a spreadsheet might hold ``number``."""
    parsed = phonenumbers.parse(number, None)
    region = phonenumbers.region_code_for_number(parsed)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return draw(
        st.sampled_from(
            [
                (number, ""),
                ("00" + number[1:], ""),
                (international, ""),
                (international.replace(" ", "-"), ""),
                (national, region),
                (f"({number[:3]}) {number[3:]}", ""),
            ]
        )
    )


@st.composite
def recipient_lists(draw: st.DrawFn) -> tuple[list[Someone], list[list[str]], int]:
    """People, the rows that list them (each person once in full, plus planted duplicate
    rows naming any of their identifiers, in any order), and how many bad rows."""
    people = draw(st.lists(someone(), min_size=1, max_size=25, unique_by=lambda s: s.msisdn))
    bsuids = [s.bsuid for s in people if s.bsuid] + [s.parent for s in people if s.parent]
    if len(set(bsuids)) != len(bsuids):
        people = people[:1]  # (vanishingly rare) two people drew the same token
    rows: list[list[str]] = []
    for person in people:
        phone, country = draw(phone_cell(person.msisdn))
        rows.append([phone, person.bsuid or "", person.parent or "", country, "x"])
        for _ in range(draw(st.integers(0, 3))):  # planted duplicates
            use_phone = draw(st.booleans()) or not (person.bsuid or person.parent)
            phone, country = draw(phone_cell(person.msisdn)) if use_phone else ("", "")
            bsuid = person.bsuid if person.bsuid and draw(st.booleans()) else ""
            parent = person.parent if person.parent and draw(st.booleans()) else ""
            if not (phone or bsuid or parent):
                phone, country = person.msisdn, ""
            rows.append([phone, bsuid, parent, country, "y"])
    bad = draw(st.integers(0, 3))
    rows += [["12", "", "", "", "bad"], ["", "nope", "", "", "bad"], ["", "", "", "", "bad"]][:bad]
    return people, draw(st.permutations(rows)), bad


def write_csv(folder: Path, rows: list[list[str]], name: str = "people.csv") -> Path:
    path = folder / name
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["phone", "bsuid", "parent_bsuid", "country", "note"])
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def resolve(paths: list[Path], **people: object) -> tuple[Audience, list[Person], list[Reject]]:
    with Audience(paths, "NO") as audience:
        audience.scan()
        found = list(audience.people(**people))  # type: ignore[arg-type]
        return audience, [p for p in found if isinstance(p, Person)], list(audience.rejects([]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipient_lists())
def test_every_person_gets_exactly_one_destination(
    case: tuple[list[Someone], list[list[str]], int],
) -> None:
    people, rows, bad = case
    with tempfile.TemporaryDirectory() as folder:
        audience, found, rejects = resolve([write_csv(Path(folder), rows)])
    destinations = [p.destination for p in found]
    assert len(destinations) == len(set(destinations)) == len(people)
    assert set(destinations) == {s.msisdn for s in people}  # the default policy: phone
    assert {frozenset(p.identifiers) for p in found} == {frozenset(s.identifiers) for s in people}
    assert len(rejects) == bad
    assert audience.duplicates == len(rows) - bad - len(people)


@settings(max_examples=50, deadline=None)
@given(recipient_lists(), st.sampled_from(["bsuid", "parent_bsuid"]))
def test_the_policy_picks_which_identifier_to_send_to(
    case: tuple[list[Someone], list[list[str]], int], send_to: str
) -> None:
    people, rows, _ = case
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder), rows)
        with Audience([path], "NO", send_to=send_to) as audience:  # type: ignore[arg-type]
            audience.scan()
            found = [p for p in audience.people() if isinstance(p, Person)]
    order = ("bsuid", "parent") if send_to == "bsuid" else ("parent", "bsuid")
    expected = {getattr(s, order[0]) or getattr(s, order[1]) or s.msisdn for s in people}
    assert {p.destination for p in found} == expected


def test_people_are_deduplicated_across_files(tmp_path: Path) -> None:
    crm = write_csv(tmp_path, [["+4791234567", "", "", "", "crm"]], "crm.csv")
    signups = write_csv(
        tmp_path,
        [["004791234567", "NO.abc123", "", "", "new"], ["", "NO.abc123", "", "", "again"]],
        "signups.csv",
    )
    audience, found, _ = resolve([crm, signups])
    assert [(p.first.file.name, p.first.line, p.identifiers) for p in found] == [
        ("crm.csv", 2, ["+4791234567", "NO.abc123"])
    ]
    assert audience.duplicates == 2


def test_the_identity_book_joins_rows_nothing_in_the_file_links(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [["+4791234567", "", "", "", "a"], ["", "NO.abc123", "", "", "b"]])
    with Audience([path], "NO") as audience:
        audience.scan()
        audience.graph.link_book({"+4791234567": "p1", "NO.abc123": "p1", "NO.ENT.zz9": "p1"})
        (person,) = [p for p in audience.people() if isinstance(p, Person)]
    assert person.key == "p1"
    assert person.identifiers == ["+4791234567", "NO.abc123", "NO.ENT.zz9"]


def test_a_suppressed_identifier_opts_out_the_whole_person(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path, [["", "NO.abc123", "", "", "a"], ["+4791234567", "NO.abc123", "", "", "b"]]
    )
    _, found, _ = resolve([path], suppressed={"+4791234567"})
    assert found == []
    with Audience([path], "NO") as audience:
        audience.scan()
        (reject,) = list(audience.people(suppressed={"+4791234567"}))
    assert isinstance(reject, Reject)
    assert (reject.line, reject.reason) == (2, SUPPRESSED)


def test_rejects_come_back_in_line_order_with_later_ones_merged(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        [["12", "", "", "", "a"], ["+4791234567", "", "", "", "b"], ["", "x", "", "", "c"]],
    )
    with Audience([path], "NO") as audience:
        audience.scan()
        later = Reject(path, 3, "a later reason", {})
        merged = [(r.line, r.reason) for r in audience.rejects([later])]
    assert merged == [
        (2, "invalid phone number"),
        (3, "a later reason"),
        (4, "malformed BSUID (expected CC.<id>)"),
    ]


def test_a_file_changed_between_the_passes_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [["+4791234567", "", "", "", "a"]])
    with Audience([path], "NO") as audience:
        audience.scan()
        path.write_text(path.read_text() + "+4791234568,,,,b\n", encoding="utf-8")
        with pytest.raises(RecipientsError, match="changed"):
            list(audience.people())


def merged_lines(paths: list[Path], book: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """``(line, description)`` of every merged row, after both passes."""
    with Audience(paths, "NO") as audience:
        audience.scan()
        audience.graph.link_book(book or {})
        list(audience.people())
        return [(m.line, m.description) for m in audience.merged()]


def test_a_number_listed_twice_is_merged_into_its_first_line(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        [["+4791234567", "", "", "", "a"], ["+4791234568", "", "", "", "b"],
         ["004791234567", "", "", "", "c"]],
    )  # fmt: skip
    assert merged_lines([path]) == [(4, "merged into line 2: same phone number as line 2")]


def test_a_bsuid_row_and_a_number_row_linked_by_a_third_row_name_that_row(
    tmp_path: Path,
) -> None:
    path = write_csv(
        tmp_path,
        [["+4791234567", "", "", "", "a"], ["", "NO.abc123", "", "", "b"],
         ["+4791234567", "NO.abc123", "", "", "c"]],
    )  # fmt: skip
    assert merged_lines([path]) == [
        (3, "merged into line 2: BSUID linked to line 2 by line 4"),
        (4, "merged into line 2: same phone number as line 2"),
    ]


def test_a_row_merged_through_a_chain_of_rows_names_the_first_link_it_knows(
    tmp_path: Path,
) -> None:
    path = write_csv(
        tmp_path,
        [["+4791234567", "", "", "", "a"], ["", "NO.abc123", "", "", "b"],
         ["+4791234568", "NO.abc123", "", "", "c"], ["+4791234568", "NO.def456", "", "", "d"],
         ["+4791234567", "NO.def456", "", "", "e"]],
    )  # fmt: skip
    assert merged_lines([path]) == [
        (3, "merged into line 2: BSUID linked to line 2 through line 4 and further rows"),
        (4, "merged into line 2: linked to line 2 through other rows of the list"),
        (5, "merged into line 2: BSUID linked to line 2 by line 6"),
        (6, "merged into line 2: same phone number as line 2"),
    ]


def test_a_link_only_the_identity_book_knows_is_given_as_the_reason(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [["+4791234567", "", "", "", "a"], ["", "NO.abc123", "", "", "b"]])
    assert merged_lines([path], {"+4791234567": "p1", "NO.abc123": "p1"}) == [
        (3, "merged into line 2: BSUID linked to line 2 by the identity book "
            "(learned from LINK's reports, not from this list)"),
    ]  # fmt: skip


def test_a_row_merged_into_a_line_of_another_file_names_that_file(tmp_path: Path) -> None:
    crm = write_csv(tmp_path, [["+4791234567", "NO.abc123", "", "", "crm"]], "crm.csv")
    signups = write_csv(
        tmp_path,
        [["", "NO.abc123", "", "", "new"], ["+4791234568", "", "", "", "other"],
         ["+4791234568", "", "", "", "again"]],
        "signups.csv",
    )  # fmt: skip
    assert merged_lines([crm, signups]) == [
        (2, "merged into crm.csv line 2: same BSUID as crm.csv line 2"),
        (4, "merged into line 3: same phone number as line 3"),
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipient_lists())
def test_every_line_is_kept_merged_or_rejected_and_a_shared_identifier_is_named_truly(
    case: tuple[list[Someone], list[list[str]], int],
) -> None:
    _, rows, _ = case
    with (
        tempfile.TemporaryDirectory() as folder,
        Audience([write_csv(Path(folder), rows)], "NO") as audience,
    ):
        audience.scan()
        found = [p for p in audience.people() if isinstance(p, Person)]
        merges = list(audience.merged())
        rejects = list(audience.rejects([]))
    lines = [p.first.line for p in found] + [m.line for m in merges] + [r.line for r in rejects]
    assert sorted(lines) == list(range(2, len(rows) + 2))
    assert len(merges) == audience.duplicates
    kept = {p.first.line: set(p.identifiers) for p in found}
    for merge in merges:
        assert set(merge.identifiers) <= kept[merge.kept_line]
        kept_row = _row_identifiers(rows[merge.kept_line - 2])
        if merge.reason.startswith("same "):
            assert set(merge.identifiers) & kept_row
        link = re.search(r"by line (\d+)$", merge.reason)
        if link:  # that row names one of this row's identifiers and one of the kept row's
            linking = _row_identifiers(rows[int(link.group(1)) - 2])
            assert linking & set(merge.identifiers) and linking & kept_row


def _row_identifiers(cells: list[str]) -> set[str]:
    phone = normalise_msisdn(cells[0], cells[3] or "NO") if cells[0] else None
    return {i for i in (phone, cells[1], cells[2]) if i}
