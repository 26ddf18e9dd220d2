"""A campaign's audience, read in two passes so that millions of rows fit in memory.

A person can be named by an MSISDN on line 10 and by its BSUID on line 900,000, and
the row that links the two can come last: nobody may be messaged before every row has
been read. So:

1. ``scan`` reads every file once, normalises each row's identifiers and merges them
   in an ``IdentityGraph``; a row keeps nothing but the number of its first
   identifier (8 bytes). Rejects go to a spool file, in line order.
2. The caller links the identity book and looks up suppressions (database work).
3. ``people`` reads the files again, CSV only, no normalisation: the first row of each
   person yields a ``Person`` with that row's values; later rows are duplicates.

Memory is the graph (about 150 bytes per distinct identifier), not the rows. The
files must not change between the passes; their size and modification time are
checked.
"""

from __future__ import annotations

import csv
import heapq
import json
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dispatcher.errors import RecipientsError
from dispatcher.identity import IdentityGraph, Person, SendTo, person_of
from dispatcher.recipients import ColumnNames, RecipientsFile, Reject, Row

_REJECTED = -1
SUPPRESSED = "suppressed (opted out)"


@dataclass(frozen=True, slots=True)
class _Stamp:
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Stamp:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns)


class Audience:
    """The recipients files of one campaign, resolved into people."""

    def __init__(
        self,
        files: Sequence[Path],
        default_region: str | None = None,
        names: ColumnNames | None = None,
        send_to: SendTo = "phone",
    ) -> None:
        self.files = list(files)
        self.default_region = default_region
        self.names = names
        self.send_to = send_to
        self.graph = IdentityGraph()
        self.columns: list[str] = []  # every file's columns, in order of appearance
        self.loaded = 0  # records read (blank lines are not records)
        self.rejected = 0  # records refused while reading
        self.duplicates = 0  # rows of a person already seen (set by ``people``)
        self._first = array("q")  # per record: its first identifier's number, or -1
        self._stamps: list[_Stamp] = []
        self._spool: IO[str] | None = None

    def open(self, index: int) -> RecipientsFile:
        return RecipientsFile(self.files[index], self.default_region, self.names)

    def headers(self) -> Iterator[tuple[int, list[str]]]:
        """``(file index, columns)`` of every file, reading headers only."""
        for index in range(len(self.files)):
            with self.open(index) as recipients:
                yield index, recipients.columns

    def scan(self) -> None:
        """First pass: normalise and merge every row's identifiers, spool rejects."""
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        spool = csv.writer(self._spool)
        graph, first = self.graph, self._first
        add, add_row = graph.add, graph.add_row
        for index, path in enumerate(self.files):
            self._stamps.append(_Stamp.of(path))
            with self.open(index) as recipients:
                self.columns.extend(c for c in recipients.columns if c not in self.columns)
                identify = recipients.identify
                for line, cells, problem in recipients.records():
                    found = problem or identify(cells)
                    if isinstance(found, str):
                        first.append(_REJECTED)
                        spool.writerow([index, line, found, json.dumps(recipients.values(cells))])
                        self.rejected += 1
                        continue
                    msisdn, bsuid, parent = found
                    if bsuid is None and parent is None:
                        first.append(add(msisdn))  # type: ignore[arg-type]
                    else:
                        first.append(add_row(i for i in found if i))
        self.loaded = len(first)

    def identifiers(self) -> list[str]:
        """Every identifier of the audience (for the identity book and suppressions)."""
        return list(self.graph.number)

    def people(
        self, suppressed: Iterable[str] = (), already: Iterable[str] = ()
    ) -> Iterator[Person | Reject]:
        """Second pass: each person once, at its first row, or that row as a reject.

        ``suppressed`` identifiers opt their whole person out (a phone number's opt-out
        covers that user's BSUID); people with an identifier in ``already`` (stored by
        an earlier, interrupted preparation) are left out without a word.
        """
        stop = set(suppressed)
        done = set(already)
        graph, first = self.graph, self._first
        seen = bytearray(len(graph))
        record = 0
        for index, path in enumerate(self.files):
            if _Stamp.of(path) != self._stamps[index]:
                raise RecipientsError(f"{path}: changed while the campaign was being prepared")
            with self.open(index) as recipients:
                values = recipients.values
                for line, cells, _ in recipients.records():
                    number = first[record]
                    record += 1
                    if number == _REJECTED:
                        continue
                    root = graph.find(number)
                    if seen[root]:
                        self.duplicates += 1
                        continue
                    seen[root] = 1
                    row = Row(path, line, None, None, None, values(cells))
                    person = person_of(graph, root, row, self.send_to)
                    if done and not done.isdisjoint(person.identifiers):
                        continue
                    if stop and not stop.isdisjoint(person.identifiers):
                        yield Reject(path, line, SUPPRESSED, row.values)
                        continue
                    yield person
        if record != len(first):
            raise RecipientsError("the recipients files changed while being prepared")

    def rejects(self, later: Iterable[Reject]) -> Iterator[Reject]:
        """Every reject in file and line order: those of the first pass merged with
        ``later`` ones (suppressed, skipped by a rule, message invalid)."""
        order = {path: index for index, path in enumerate(self.files)}
        extra = sorted(later, key=lambda r: (order.get(r.file, -1), r.line))
        return heapq.merge(self._spooled(), extra, key=lambda r: (order.get(r.file, -1), r.line))

    def _spooled(self) -> Iterator[Reject]:
        if self._spool is None:
            return
        self._spool.seek(0)
        for index, line, reason, raw in csv.reader(self._spool):
            yield Reject(self.files[int(index)], int(line), reason, json.loads(raw))

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> Audience:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
