"""Identity resolution: one WhatsApp user, however many identifiers, gets one send.

LINK delivers twice when an MSISDN and a BSUID of the same user are both sent to
(seed 004 'BSUIDs in API calls for sending messages'). Identifiers that share a row,
appear in several rows, or are linked by the identity book (what DLRs and incoming
messages taught us) are merged with a union-find into one ``Person``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dispatcher.recipients import PARENT_BSUID, Row


@dataclass(slots=True)
class Person:
    """One recipient after merging: the first row's data, every identifier seen."""

    key: str
    first: Row
    msisdns: list[str] = field(default_factory=list)
    bsuids: list[str] = field(default_factory=list)
    parent_bsuids: list[str] = field(default_factory=list)
    rows: int = 1

    @property
    def destination(self) -> str:
        """Default policy: the phone number, else the BSUID, else the parent BSUID.

        Phone numbers work for every template (BSUIDs do not for authentication ones,
        seed 004 'BSUID Limitations'); the parent BSUID is the broadest identifier.
        """
        for candidates in (self.msisdns, self.bsuids, self.parent_bsuids):
            if candidates:
                return candidates[0]
        raise ValueError("a person without identifiers")  # cannot happen: rows have one

    @property
    def identifiers(self) -> list[str]:
        return [*self.msisdns, *self.bsuids, *self.parent_bsuids]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        parent = self.parent.setdefault(item, item)
        root = item
        while parent != root:
            root, parent = parent, self.parent[parent]
        while item != root:  # path compression
            item, self.parent[item] = self.parent[item], root
        return root

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def resolve(rows: Iterable[Row], book: Mapping[str, str]) -> list[Person]:
    """Merge rows into people, in the order their first row appears.

    ``book`` maps a known identifier to its person key in the identity book; two
    identifiers with the same person key belong to the same user.
    """
    rows = list(rows)
    links = _UnionFind()
    for row in rows:
        ids = row.identifiers
        for identifier in ids:
            links.find(identifier)
            if identifier in book:
                links.union(identifier, "book:" + book[identifier])
        for other in ids[1:]:
            links.union(ids[0], other)
    people: dict[str, Person] = {}
    for row in rows:
        root = links.find(row.identifiers[0])
        person = people.get(root)
        if person is None:
            person = people[root] = Person(key="", first=row)
        else:
            person.rows += 1
        for identifier in row.identifiers:
            bucket = (
                person.msisdns
                if identifier.startswith("+")
                else person.parent_bsuids
                if PARENT_BSUID.match(identifier)
                else person.bsuids
            )
            if identifier not in bucket:
                bucket.append(identifier)
    for person in people.values():
        known = next((book[i] for i in person.identifiers if i in book), None)
        person.key = known or person.destination
    return list(people.values())
