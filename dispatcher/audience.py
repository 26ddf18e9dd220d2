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
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dispatcher.errors import RecipientsError
from dispatcher.identity import IdentityGraph, Person, SendTo, person_of
from dispatcher.normaliser import Normaliser
from dispatcher.recipients import (
    ColumnNames,
    Parts,
    RecipientsFile,
    Reject,
    Row,
    normalise_msisdn,
    settle,
)

_REJECTED = -1
SUPPRESSED = "suppressed (opted out)"


#: Records per chunk handed to the normaliser.
SCAN_CHUNK = 10_000
#: Files at least this big (in all) are normalised in a child process.
PARALLEL_BYTES = 4_000_000


@dataclass(slots=True)
class _Chunk:
    """Records of one file read, waiting for their phone numbers to be normalised."""

    file: int
    columns: list[str]
    records: list[tuple[int, list[str], Parts | str]] = field(default_factory=list)
    phones: list[tuple[str, str | None]] = field(default_factory=list)


class _Inline:
    """``Normaliser``'s interface, normalising in this process (small files)."""

    def __init__(self) -> None:
        self._waiting: deque[list[tuple[str, str | None]]] = deque()

    def send(self, cells: list[tuple[str, str | None]]) -> None:
        self._waiting.append(cells)

    def receive(self) -> list[str | None]:
        return [normalise_msisdn(cell, region) for cell, region in self._waiting.popleft()]

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *_: object) -> None:
        pass


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

    def scan(self, parallel: bool | None = None) -> None:
        """First pass: normalise and merge every row's identifiers, spool rejects.

        ``parallel`` (default: for files over ``PARALLEL_BYTES``) normalises phone
        numbers in a child process (``dispatcher.normaliser``) while this one reads
        the CSV and merges identities: both cores work.
        """
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        if parallel is None:
            parallel = sum(path.stat().st_size for path in self.files) >= PARALLEL_BYTES
        normaliser: Normaliser | _Inline = Normaliser() if parallel else _Inline()
        with normaliser:
            self._scan(normaliser)
        self.loaded = len(self._first)

    def _scan(self, normaliser: Normaliser | _Inline) -> None:
        pending: deque[_Chunk] = deque()
        for index, path in enumerate(self.files):
            self._stamps.append(_Stamp.of(path))
            with self.open(index) as recipients:
                self.columns.extend(c for c in recipients.columns if c not in self.columns)
                parts = recipients.parts
                chunk = _Chunk(index, recipients.columns)
                for line, cells, problem in recipients.records():
                    found = problem or parts(cells)
                    chunk.records.append((line, cells, found))
                    if not isinstance(found, str) and found[0]:
                        chunk.phones.append((found[0], found[1]))
                    if len(chunk.records) >= SCAN_CHUNK:
                        normaliser.send(chunk.phones)
                        pending.append(chunk)
                        chunk = _Chunk(index, recipients.columns)
                        if len(pending) > 2:  # keep the child busy, memory bounded
                            self._merge(pending.popleft(), normaliser.receive())
                normaliser.send(chunk.phones)
                pending.append(chunk)
        while pending:
            self._merge(pending.popleft(), normaliser.receive())

    def _merge(self, chunk: _Chunk, numbers: list[str | None]) -> None:
        """Number the identifiers of a chunk's records, in order; spool its rejects."""
        spool = csv.writer(self._spool)  # type: ignore[arg-type]
        first, add, add_row = self._first, self.graph.add, self.graph.add_row
        answers = iter(numbers)
        for line, cells, found in chunk.records:
            if isinstance(found, str):
                outcome: tuple[str | None, str | None, str | None] | str = found
            elif found[0] and found[2] is None and found[3] is None and found[4] is None:
                msisdn = next(answers)  # the usual row: a phone number and nothing else
                if msisdn is not None:
                    first.append(add(msisdn))
                    continue
                outcome = settle(None, found)
            else:
                outcome = settle(next(answers) if found[0] else None, found)
            if isinstance(outcome, str):
                first.append(_REJECTED)
                values = dict(zip(chunk.columns, cells, strict=False))
                spool.writerow([chunk.file, line, outcome, json.dumps(values)])
                self.rejected += 1
                continue
            msisdn, bsuid, parent = outcome
            if bsuid is None and parent is None:
                first.append(add(msisdn))  # type: ignore[arg-type]
            else:
                first.append(add_row(i for i in outcome if i))

    def check_unchanged(self) -> None:
        """Refuse files changed since the first pass (checked again as each is read)."""
        for path, stamp in zip(self.files, self._stamps, strict=True):
            if _Stamp.of(path) != stamp:
                raise RecipientsError(f"{path}: changed while the campaign was being prepared")

    def firsts(self) -> Iterator[tuple[int, RecipientsFile, int, list[str]]]:
        """Second pass: ``(root, file, line, cells)`` at the first row of each person,
        ``root`` being the person's number in the graph; later rows are counted as
        duplicates. The lean form of ``people`` for a million rows."""
        graph, first = self.graph, self._first
        find = graph.find
        seen = bytearray(len(graph))
        record = 0
        for index, path in enumerate(self.files):
            if _Stamp.of(path) != self._stamps[index]:
                raise RecipientsError(f"{path}: changed while the campaign was being prepared")
            with self.open(index) as recipients:
                for line, cells, _ in recipients.records():
                    number = first[record]
                    record += 1
                    if number == _REJECTED:
                        continue
                    root = find(number)
                    if seen[root]:
                        self.duplicates += 1
                        continue
                    seen[root] = 1
                    yield root, recipients, line, cells
        if record != len(first):
            raise RecipientsError("the recipients files changed while being prepared")

    def marks(self, identifiers: Iterable[str]) -> bytearray:
        """One byte per graph node, set at the roots of the people ``identifiers`` name
        (call after every merge, the identity book's included)."""
        marked = bytearray(len(self.graph))
        number, find = self.graph.number, self.graph.find
        for identifier in identifiers:
            found = number.get(identifier)
            if found is not None:
                marked[find(found)] = 1
        return marked

    def identity(
        self, root: int, *, phones_only: bool = False
    ) -> tuple[str, str, list[str]] | None:
        """``(key, destination, identifiers)`` of the person ``root`` stands for; with
        ``phones_only`` its phone numbers alone, or None when it has none."""
        return self.graph.describe(root, self.send_to, phones_only=phones_only)

    def people(
        self, suppressed: Iterable[str] = (), already: Iterable[str] = ()
    ) -> Iterator[Person | Reject]:
        """Each person once, at its first row, or that row as a reject.

        ``suppressed`` identifiers opt their whole person out (a phone number's opt-out
        covers that user's BSUID); people with an identifier in ``already`` (stored by
        an earlier, interrupted preparation) are left out without a word.
        """
        stop, done = self.marks(suppressed), self.marks(already)
        for root, recipients, line, cells in self.firsts():
            if done[root]:
                continue
            row = Row(recipients.path, line, None, None, None, recipients.values(cells))
            if stop[root]:
                yield Reject(recipients.path, line, SUPPRESSED, row.values)
                continue
            yield person_of(self.graph, root, row, self.send_to)

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
