"""Identity resolution: one WhatsApp user, however many identifiers, gets one send.

LINK delivers twice when an MSISDN and a BSUID of the same user are both sent to
(seed 004 'BSUIDs in API calls for sending messages'). Identifiers that share a row,
appear in several rows, or are linked by the identity book (what DLRs and incoming
messages taught us) are merged with a union-find into one ``Person``.

``IdentityGraph`` numbers identifiers and keeps the union-find in flat integer arrays:
a million-row list costs about 150 bytes per identifier, not a Python object per row.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dispatcher.audience.recipients import Row

#: Which identifier of a person a campaign sends to, in order of preference.
SendTo = Literal["phone", "bsuid", "parent_bsuid"]
_ORDER: dict[str, tuple[int, int, int]] = {
    # indices into (msisdns, bsuids, parent_bsuids)
    "phone": (0, 1, 2),
    "bsuid": (1, 2, 0),
    "parent_bsuid": (2, 1, 0),
}
_BOOK = "book:"  # prefix of the graph's nodes that stand for an identity-book person


@dataclass(slots=True)
class Person:
    """One recipient after merging: the first row's data, every identifier known."""

    key: str
    first: Row
    msisdns: list[str] = field(default_factory=list)
    bsuids: list[str] = field(default_factory=list)
    parent_bsuids: list[str] = field(default_factory=list)
    rows: int = 1
    send_to: SendTo = "phone"
    #: the destination the graph chose (barred identifiers left out); '' to choose here
    chosen: str = ""

    @property
    def destination(self) -> str:
        """The identifier the policy prefers; by default the phone number.

        Phone numbers work for every template (BSUIDs do not for authentication ones,
        seed 004 'BSUID Limitations'); the parent BSUID is the broadest identifier.
        """
        if self.chosen:
            return self.chosen
        kinds = (self.msisdns, self.bsuids, self.parent_bsuids)
        for index in _ORDER[self.send_to]:
            if kinds[index]:
                return kinds[index][0]
        raise ValueError("a person without identifiers")  # cannot happen: rows have one

    @property
    def identifiers(self) -> list[str]:
        return [*self.msisdns, *self.bsuids, *self.parent_bsuids]

    def bucket(self, identifier: str) -> list[str]:
        """The list a validated identifier belongs in (by its shape: ``+``, ``CC.ENT.``)."""
        if identifier[0] == "+":
            return self.msisdns
        return self.parent_bsuids if identifier[2:7] == ".ENT." else self.bsuids


class IdentityGraph:
    """Identifiers numbered in order of appearance, merged with a union-find."""

    def __init__(self) -> None:
        self.number: dict[str, int] = {}
        self.names: list[str] = []
        self._parent = array("q")
        self._members: array[int] | None = None
        # The union-find as the rows left it, copied when the identity book is linked:
        # tells a merge the list made from one only the book made.
        self._before_book: array[int] | None = None
        #: identifiers that name their person but are never sent to, and why (a BSUID
        #: of another business portfolio, a retired BSUID or number): few, by number
        self.barred: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.names)

    def add(self, identifier: str) -> int:
        number = self.number.setdefault(identifier, len(self.names))
        if number == len(self.names):  # new
            self.names.append(identifier)
            self._parent.append(number)
        return number

    def find(self, number: int) -> int:
        parent = self._parent
        root = number
        while parent[root] != root:
            root = parent[root]
        while parent[number] != root:  # path compression
            parent[number], number = root, parent[number]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:  # the earlier identifier stays the root
            self._parent[max(root_a, root_b)] = min(root_a, root_b)
            self._members = None

    def link_book(self, book: Mapping[str, str]) -> None:
        """Merge identifiers the identity book holds as one person (``identifier ->
        person key``); identifiers known only to the book join their person."""
        if book and self._before_book is None:
            self._before_book = array("q", self._parent)
        for identifier, key in book.items():
            self.union(self.add(identifier), self.add(_BOOK + key))

    def bar(self, identifier: str, reason: str) -> None:
        """Never choose ``identifier`` as a destination (it still names its person)."""
        number = self.number.get(identifier)
        if number is not None:
            self.barred.setdefault(number, reason)

    def unreachable(self, root: int) -> str | None:
        """Why the person ``root`` stands for has no destination: the reason one of its
        identifiers was barred, or None when none was."""
        following, number = self._following(), root
        while number != -1:
            if number in self.barred:
                return self.barred[number]
            number = following[number]
        return None

    def of_book_person(self, identifier: str, key: str) -> bool:
        """Whether ``identifier`` is one person with the identity book's person ``key``
        (after ``link_book``)."""
        number, kin = self.number.get(identifier), self.number.get(_BOOK + key)
        return number is not None and kin is not None and self.find(number) == self.find(kin)

    def merged_by_rows(self, a: int, b: int) -> bool:
        """Whether identifiers ``a`` and ``b`` were one person before the identity book
        was linked (the rows alone merged them)."""
        parent = self._before_book
        if parent is None:
            return self.find(a) == self.find(b)
        return _root(parent, a) == _root(parent, b)

    def describe(
        self, root: int, send_to: SendTo = "phone", *, phones_only: bool = False
    ) -> tuple[str, str, list[str]] | None:
        """``(key, destination, identifiers)`` of the person ``root`` stands for, in
        one walk of its list (a million people go through here); with ``phones_only``
        its phone numbers alone, or None when it has none."""
        following, names, barred = self._following(), self.names, self.barred
        if following[root] == -1:  # most people: one identifier
            name = names[root]
            if name.startswith(_BOOK) or (phones_only and name[0] != "+"):
                return None
            if barred and root in barred:
                return None
            return name, name, [name]
        kinds: tuple[list[str], list[str], list[str]] = ([], [], [])
        usable: tuple[list[str], list[str], list[str]] = ([], [], [])
        key = None
        number = root
        while number != -1:
            name = names[number]
            if name.startswith(_BOOK):
                key = key or name[len(_BOOK) :]
            else:
                kind = 0 if name[0] == "+" else 2 if name[2:7] == ".ENT." else 1
                kinds[kind].append(name)
                if not barred or number not in barred:
                    usable[kind].append(name)
            number = following[number]
        if phones_only:
            kinds, usable = (kinds[0], [], []), (usable[0], [], [])
        destination = next((usable[i][0] for i in _ORDER[send_to] if usable[i]), None)
        if destination is None:
            return None
        return key or destination, destination, [*kinds[0], *kinds[1], *kinds[2]]

    def _following(self) -> array[int]:
        """Each person's identifiers threaded into a list from its root (built again
        once identifiers were added or merged since)."""
        if self._members is None or len(self._members) != len(self.names):
            self._index_members()
        assert self._members is not None
        return self._members

    def _index_members(self) -> None:
        """Thread each person's identifiers into a linked list starting at its root
        (two flat arrays instead of a list per person)."""
        size = len(self.names)
        following = array("q", [-1]) * size
        last = array("q", range(size))  # the tail of each root's list so far
        for number in range(size):
            root = self.find(number)
            if root != number:
                following[last[root]] = number
                last[root] = number
        self._members = following


def _root(parent: array[int], number: int) -> int:
    """``IdentityGraph.find`` on another copy of the union-find."""
    root = number
    while parent[root] != root:
        root = parent[root]
    while parent[number] != root:
        parent[number], number = root, parent[number]
    return root


def person_of(
    graph: IdentityGraph, root: int, first: Row, send_to: SendTo = "phone"
) -> Person | None:
    """The ``Person`` that ``root`` stands for, with ``first`` as its data row; None
    when every identifier of theirs is barred (``IdentityGraph.unreachable``)."""
    described = graph.describe(root, send_to)
    if described is None:
        return None
    key, destination, identifiers = described
    person = Person(key=key, first=first, send_to=send_to, chosen=destination)
    for identifier in identifiers:
        person.bucket(identifier).append(identifier)
    return person
