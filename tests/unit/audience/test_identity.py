from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dispatcher.audience.identity import IdentityGraph, Person, person_of
from dispatcher.audience.recipients import Row

FILE = Path("people.csv")


def row(
    line: int, msisdn: str | None = None, bsuid: str | None = None, parent: str | None = None
) -> Row:
    return Row(FILE, line, msisdn, bsuid, parent, {"line": str(line)})


def resolve(rows: list[Row], book: Mapping[str, str]) -> list[Person]:
    """Rows merged into people as ``Audience`` merges them: each row's identifiers are
    one person, the identity book links what it knows, and a person is its first row
    (later rows counted in ``rows``)."""
    graph = IdentityGraph()
    firsts = []
    for each in rows:
        numbers = [graph.add(i) for i in each.identifiers]
        for other in numbers[1:]:
            graph.union(numbers[0], other)
        firsts.append(numbers[0])
    graph.link_book(book)
    people: dict[int, Person] = {}
    for each, first in zip(rows, firsts, strict=True):
        root = graph.find(first)
        if root in people:
            people[root].rows += 1
        else:
            people[root] = person_of(graph, root, each)
    return list(people.values())


def test_the_same_number_twice_is_one_person() -> None:
    people = resolve([row(2, "+4791234567"), row(3, "+4791234567")], {})
    assert len(people) == 1
    assert people[0].rows == 2
    assert people[0].first.line == 2


def test_user_listed_by_bsuid_and_msisdn_in_one_row_gets_one_send_to_the_msisdn() -> None:
    (person,) = resolve([row(2, "+4791234567", "NO.123")], {})
    assert person.destination == "+4791234567"
    assert person.identifiers == ["+4791234567", "NO.123"]


def test_rows_linked_through_a_shared_bsuid_are_one_person() -> None:
    people = resolve(
        [row(2, "+4791234567", "NO.123"), row(3, None, "NO.123"), row(4, None, "NO.999")], {}
    )
    assert [p.first.line for p in people] == [2, 4]


def test_the_identity_book_merges_rows_that_share_nothing_else() -> None:
    book = {"+4791234567": "person-1", "NO.555": "person-1"}
    people = resolve([row(2, "+4791234567"), row(3, None, "NO.555")], book)
    assert len(people) == 1
    assert people[0].key == "person-1"
    assert people[0].destination == "+4791234567"


def test_a_bsuid_only_person_is_sent_to_the_bsuid_and_parent_last() -> None:
    (a, b) = resolve([row(2, None, "NO.1", "NO.ENT.1"), row(3, None, None, "NO.ENT.2")], {})
    assert a.destination == "NO.1"
    assert b.destination == "NO.ENT.2"
