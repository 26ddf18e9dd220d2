"""A campaign's audience, read in two passes so that millions of rows fit in memory.

A person can be named by an MSISDN on line 10 and by its BSUID on line 900,000, and
the row that links the two can come last: nobody may be messaged before every row has
been read. So:

1. ``scan`` reads every file once, normalises each row's identifiers and merges them
   in an ``IdentityGraph``; a row keeps nothing but the number of its first
   identifier (8 bytes). Rejects go to a spool file, in line order.
2. The caller links the identity book and looks up suppressions (database work).
3. ``people`` reads the files again, CSV only, no normalisation: the first row of each
   person yields a ``Person`` with that row's values; later rows are merged into it
   and go to a second spool (``merged``) with the reason.

Memory is the graph (about 150 bytes per distinct identifier), not the rows. The
files must not change between the passes; their size and modification time are
checked.

Why a row was merged is told from a few flat arrays kept beside the graph, per
identifier: the row that first named it, and the row naming several identifiers that
links it to the earliest row. A person's kept row is its first, so the identifiers it
names are exactly those first named there; a merged row's own identifiers come from
the number its first one has and its BSUID cells (no phone number normalised again).
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

from dispatcher.audience.identity import IdentityGraph, Person, SendTo, person_of
from dispatcher.audience.normaliser import Normaliser
from dispatcher.audience.recipients import (
    ColumnNames,
    Parts,
    RecipientsFile,
    Reject,
    Row,
    normalise_msisdn,
    row_identifiers,
)
from dispatcher.errors import RecipientsError

_REJECTED = -1
SUPPRESSED = "suppressed (opted out)"
#: A row's position: its file's index shifted by this many bits, or'ed with its line,
#: so positions order as the records are read.
LINE_BITS = 40
_LINE_MASK = (1 << LINE_BITS) - 1
_NOWHERE = 1 << 62  # what no row reaches


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
class Merged:
    """A row of a person listed earlier: not a message of its own, said where it went
    (``kept_file``, ``kept_line``) and why (``reason``, e.g. "same BSUID as line 12")."""

    file: str
    line: int
    identifiers: tuple[str, ...]
    kept_file: str
    kept_line: int
    reason: str

    @property
    def description(self) -> str:
        """``merged into line 12: <reason>``, the kept line's file named when it is
        another than this row's (the report's description of the row)."""
        return f"merged into {_line_name(self.kept_file, self.kept_line, self.file)}: {self.reason}"


def _line_name(file: str, line: int, seen_from: str) -> str:
    return f"line {line}" if file == seen_from else f"{file} line {line}"


def _kind(identifier: str) -> str:
    if identifier[0] == "+":
        return "phone number"
    return "parent BSUID" if identifier[2:7] == ".ENT." else "BSUID"


def _file_names(files: Sequence[Path]) -> list[str]:
    """What reports call each file: its name, or its path when two share a name."""
    names = [path.name for path in files]
    return [path.name if names.count(path.name) == 1 else str(path) for path in files]


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
        self.file_names = _file_names(self.files)
        self.default_region = default_region
        self.names = names
        self.send_to = send_to
        self.graph = IdentityGraph()
        self.columns: list[str] = []  # every file's columns, in order of appearance
        self.loaded = 0  # records read (blank lines are not records)
        self.rejected = 0  # records refused while reading
        self.duplicates = 0  # rows of a person already seen (set by ``people``)
        self._first = array("q")  # per record: its first identifier's number, or -1
        # Per identifier (graph number): the position of the row that first named it;
        # of the rows naming it with other identifiers, the one whose earliest
        # identifier came first (``_link``), and that identifier's origin (``_reach``).
        # The identity book's identifiers, numbered last, have none.
        self._origin = array("q")
        self._link = array("q")
        self._reach = array("q")
        # Rows naming several identifiers, for the identity book (``linking_rows``):
        # their positions, and their identifiers' numbers end to end.
        self._linking_at = array("q")
        self._linking_ends = array("q")
        self._linking = array("q")
        self._stamps: list[_Stamp] = []
        self._spool: IO[str] | None = None
        self._merged: IO[str] | None = None

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
        numbers in a child process (``dispatcher.audience.normaliser``) while this one reads
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
        first, add, origin = self._first, self.graph.add, self._origin
        at = chunk.file << LINE_BITS
        answers = iter(numbers)
        for line, cells, found in chunk.records:
            if isinstance(found, str):
                outcome: tuple[str | None, str | None, str | None] | str = found
            elif found[0] and found[2] is None and found[3] is None and found[4] is None:
                msisdn = next(answers)  # the usual row: a phone number and nothing else
                if msisdn is not None:
                    number = add(msisdn)
                    first.append(number)
                    if number == len(origin):  # first named here
                        origin.append(at | line)
                    continue
                outcome = row_identifiers(None, found)
            else:
                outcome = row_identifiers(next(answers) if found[0] else None, found)
            if isinstance(outcome, str):
                first.append(_REJECTED)
                values = dict(zip(chunk.columns, cells, strict=False))
                spool.writerow([chunk.file, line, outcome, json.dumps(values)])
                self.rejected += 1
                continue
            first.append(self._add_row([i for i in outcome if i], at | line))

    def _add_row(self, identifiers: list[str], position: int) -> int:
        """Number a row's identifiers and merge them; returns the first one's number.

        A row naming several identifiers becomes, for each of them, the link to report
        when it reaches an earlier row than their link so far (``_reason``).
        """
        graph, origin = self.graph, self._origin
        numbers = [graph.add(i) for i in identifiers]
        for number in numbers:
            if number == len(origin):
                origin.append(position)
        if len(numbers) > 1:
            self._linking_at.append(position)
            self._linking.extend(numbers)
            self._linking_ends.append(len(self._linking))
            for other in numbers[1:]:
                graph.union(numbers[0], other)
            link, reach = self._link, self._reach
            missing = len(origin) - len(link)
            if missing:
                link.extend(array("q", [-1]) * missing)
                reach.extend(array("q", [_NOWHERE]) * missing)
            earliest = min(origin[n] for n in numbers)
            for number in numbers:
                if earliest < reach[number]:
                    link[number], reach[number] = position, earliest
        return numbers[0]

    def linking_rows(self) -> Iterator[tuple[str, int, list[str]]]:
        """``(file name, line, identifiers)`` of each accepted row that named several
        identifiers: what the list says of who is one person."""
        names, start = self.graph.names, 0
        for position, end in zip(self._linking_at, self._linking_ends, strict=True):
            yield (self._file_name(position), position & _LINE_MASK,
                   [names[n] for n in self._linking[start:end]])  # fmt: skip
            start = end

    def check_unchanged(self) -> None:
        """Refuse files changed since the first pass (checked again as each is read)."""
        for path, stamp in zip(self.files, self._stamps, strict=True):
            if _Stamp.of(path) != stamp:
                raise RecipientsError(f"{path}: changed while the campaign was being prepared")

    def firsts(self) -> Iterator[tuple[int, RecipientsFile, int, list[str]]]:
        """Second pass: ``(root, file, line, cells)`` at the first row of each person,
        ``root`` being the person's number in the graph; later rows are counted as
        duplicates and spooled with the reason they were merged (``merged``). The lean
        form of ``people`` for a million rows."""
        graph, first = self.graph, self._first
        find = graph.find
        kept = array("q", [-1]) * len(graph)  # per person: its first row's first identifier
        self.duplicates = 0
        if self._merged is not None:
            self._merged.close()
        self._merged = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        spool = csv.writer(self._merged)
        record = 0
        for index, path in enumerate(self.files):
            if _Stamp.of(path) != self._stamps[index]:
                raise RecipientsError(f"{path}: changed while the campaign was being prepared")
            at = index << LINE_BITS
            with self.open(index) as recipients:
                for line, cells, _ in recipients.records():
                    number = first[record]
                    record += 1
                    if number == _REJECTED:
                        continue
                    root = find(number)
                    if kept[root] < 0:
                        kept[root] = number
                        yield root, recipients, line, cells
                        continue
                    self.duplicates += 1
                    identifiers = self._identifiers(recipients, cells, number)
                    kept_at = self._origin[kept[root]]
                    reason = self._reason(identifiers, at | line, kept[root])
                    spool.writerow([index, line, kept_at, " ".join(identifiers), reason])
        if record != len(first):
            raise RecipientsError("the recipients files changed while being prepared")

    def _identifiers(self, recipients: RecipientsFile, cells: list[str], number: int) -> list[str]:
        """A merged row's identifiers: its first one by number (the phone number, when
        it has one), then its BSUIDs as its cells hold them."""
        first = self.graph.names[number]
        parts = recipients.parts(cells)
        if isinstance(parts, str):  # cannot be: the row was accepted in the first pass
            return [first]
        return [first, *(i for i in (parts[2], parts[3]) if i and i != first)]

    def _reason(self, identifiers: list[str], position: int, kept: int) -> str:
        """Why the row at ``position`` naming ``identifiers`` is the person whose first
        row named identifier number ``kept``."""
        number, origin, link, reach = self.graph.number, self._origin, self._link, self._reach
        kept_at = origin[kept]
        numbers = [number[i] for i in identifiers]

        def name(at: int) -> str:
            return _line_name(self._file_name(at), at & _LINE_MASK, self._file_name(position))

        for identifier, n in zip(identifiers, numbers, strict=True):
            if origin[n] == kept_at:
                return f"same {_kind(identifier)} as {name(kept_at)}"
        if not self.graph.merged_by_rows(numbers[0], kept):
            return (f"{_kind(identifiers[0])} linked to {name(kept_at)} by the identity book "
                    "(learned from LINK's reports, not from this list)")  # fmt: skip
        for identifier, n in zip(identifiers, numbers, strict=True):
            if n < len(reach) and reach[n] == kept_at:  # that row names one of line N's
                return f"{_kind(identifier)} linked to {name(kept_at)} by {name(link[n])}"
        for identifier, n in zip(identifiers, numbers, strict=True):
            if n < len(link) and link[n] not in (-1, position):
                return (f"{_kind(identifier)} linked to {name(kept_at)} through "
                        f"{name(link[n])} and further rows")  # fmt: skip
        return f"linked to {name(kept_at)} through other rows of the list"

    def _file_name(self, position: int) -> str:
        return self.file_names[position >> LINE_BITS]

    def merged(self) -> Iterator[Merged]:
        """The rows ``firsts`` merged into an earlier one, in file and line order."""
        if self._merged is None:
            return
        self._merged.seek(0)
        names = self.file_names
        for index, line, kept_at, identifiers, reason in csv.reader(self._merged):
            kept = int(kept_at)
            yield Merged(names[int(index)], int(line), tuple(identifiers.split(" ")),
                         names[kept >> LINE_BITS], kept & _LINE_MASK, reason)  # fmt: skip

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

    def unreachable(self, root: int) -> str:
        """Why the person ``root`` stands for has no identifier to send to."""
        return self.graph.unreachable(root) or "no identifier that can be sent to"

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
            person = person_of(self.graph, root, row, self.send_to)
            if person is None:
                yield Reject(recipients.path, line, self.unreachable(root), row.values)
                continue
            yield person

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
        for spool in (self._spool, self._merged):
            if spool is not None:
                spool.close()
        self._spool = self._merged = None

    def __enter__(self) -> Audience:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
