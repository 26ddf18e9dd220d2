"""Streaming recipients CSV loader: normalise identifiers, send bad rows to rejects.

Rows are read one at a time (the file may hold millions). Every row is either a
``Row`` with at least one usable identifier or a ``Reject`` carrying its line number
and reason, so nothing is dropped silently.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from dispatcher.audience.phone import e164
from dispatcher.errors import RecipientsError

# Header names people use, after normalisation (lower case, '_' for separators).
MSISDN_COLUMNS = ("phone", "msisdn", "mobile", "phone_number", "mobile_number", "number")
BSUID_COLUMNS = ("bsuid", "whatsapp_user_id", "whatsappuserid", "user_id")
PARENT_BSUID_COLUMNS = ("parent_bsuid", "whatsapp_parent_user_id", "whatsappparentuserid")
COUNTRY_COLUMNS = ("country", "country_code", "region")

# Seed 004 'BSUID': two-letter country code, '.', up to 128 alphanumerics;
# parent BSUID: the same with 'ENT.' in between.
BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9]{1,128}$")
PARENT_BSUID = re.compile(r"^[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}$")

_PHONE_NOISE = re.compile(r"[\s\-().\u00a0/]")
_CLEAN = re.compile(r"\+?[0-9]+")
_DIGITS = re.compile(r"\+?\d+")  # any script's digits: ``dispatcher.audience.phone`` knows them all
_SCIENTIFIC = re.compile(r"^\+?\d+(?:[.,]\d+)?[eE]\+?\d+$")


@dataclass(frozen=True, slots=True)
class Row:
    """A usable recipient row."""

    file: Path
    line: int
    msisdn: str | None
    bsuid: str | None
    parent_bsuid: str | None
    values: dict[str, str] = field(repr=False)

    @property
    def identifiers(self) -> tuple[str, ...]:
        return tuple(i for i in (self.msisdn, self.bsuid, self.parent_bsuid) if i)


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that cannot be used, with the reason a person can act on."""

    file: Path
    line: int
    reason: str
    raw: dict[str, str] = field(repr=False)


def normalise_header(name: str) -> str:
    """``" First Name"`` -> ``"first_name"``: what placeholders refer to."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def normalise_msisdn(raw: str, region: str | None) -> str | None:
    """E.164 for a number as spreadsheets produce it, or None when it is not valid.

    Handles '+' stripped by Excel, scientific notation, '00' prefixes, spaces,
    dashes, parentheses, and national numbers given a region.
    """
    text = raw.strip()
    if not _CLEAN.fullmatch(text):  # most cells are digits already: skip the clean-up
        if _SCIENTIFIC.match(text):
            expanded = _from_scientific(text)
            if expanded is None:
                return None
            text = expanded
        text = _PHONE_NOISE.sub("", text)
        if not _DIGITS.fullmatch(text):
            return None
    if text.startswith("00"):
        text = "+" + text[2:]
    candidates = [text] if text.startswith("+") else [text, "+" + text]
    for candidate in candidates:
        # phonenumbers' parse + is_valid_number + E.164, compiled (``dispatcher.audience.phone``)
        number = e164(candidate, None if candidate.startswith("+") else region)
        if number is not None:
            return number
    return None


def _from_scientific(text: str) -> str | None:
    """Digits of a number Excel displayed as ``4.791234567E+09``, if none were lost.

    ``4.6701234E+10`` stands for some number 467012340xx whose last digits Excel
    dropped; padding with zeros would message a stranger, so it is refused.
    """
    try:
        value = Decimal(text.lstrip("+").replace(",", "."))
    except InvalidOperation:
        return None
    if value != value.to_integral_value():
        return None
    digits = format(value, "f").split(".")[0]
    significant = len(value.normalize().as_tuple().digits)
    mantissa = text.lstrip("+").upper().split("E")[0].replace(",", ".")
    written = len(mantissa.replace(".", "").lstrip("0"))
    if written < len(digits) and significant <= written:
        return None  # trailing digits were rounded away
    return digits


def classify_bsuid(raw: str) -> tuple[str | None, str | None]:
    """``(bsuid, parent_bsuid)`` for a value from either BSUID column."""
    value = raw.strip()
    if PARENT_BSUID.match(value):
        return None, value
    if BSUID.match(value):
        return value, None
    return None, None


@dataclass(frozen=True, slots=True)
class ColumnNames:
    """Which header names hold which identifier; the first non-empty one wins."""

    phone: tuple[str, ...] = MSISDN_COLUMNS
    bsuid: tuple[str, ...] = BSUID_COLUMNS
    parent_bsuid: tuple[str, ...] = PARENT_BSUID_COLUMNS
    country: tuple[str, ...] = COUNTRY_COLUMNS


class RecipientsFile:
    """One recipients CSV, opened: ``columns`` first, then iterate its rows.

    Delimiter (``,`` ``;`` tab) is sniffed; UTF-8 with or without BOM. ``records``
    and ``identify`` are the two halves of iteration, for callers that read a file
    twice and normalise only once (``dispatcher.audience.passes``).
    """

    def __init__(
        self, path: Path, default_region: str | None = None, names: ColumnNames | None = None
    ) -> None:
        self.path = path
        self.default_region = default_region
        names = names or ColumnNames()
        try:
            self._handle = path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise RecipientsError(f"{path}: cannot open ({exc.strerror})") from exc
        try:
            sample = self._handle.read(64 * 1024)
            self._handle.seek(0)
            self._reader = csv.reader(self._handle, _dialect(sample))
            header = next(self._reader)
        except StopIteration:
            self.close()
            raise RecipientsError(f"{path}: the file is empty") from None
        except UnicodeDecodeError as exc:
            self.close()
            raise RecipientsError(f"{path}: {_not_utf8(path, exc)}") from None
        except csv.Error as exc:
            self.close()
            raise RecipientsError(f"{path}: unreadable header ({exc})") from exc
        self.columns = [normalise_header(h) for h in header]
        self._phone = self._indices(names.phone)
        self._bsuid = self._indices(names.bsuid)
        self._parent = self._indices(names.parent_bsuid)
        self._country = self._indices(names.country)
        if not (self._phone or self._bsuid or self._parent):
            self.close()
            wanted = ", ".join((*names.phone, *names.bsuid, *names.parent_bsuid))
            raise RecipientsError(
                f"{path}: no recipient column; its columns are {', '.join(self.columns)}, "
                f"and none is {wanted}: rename the header, or name the column under "
                "columns: in the spec (columns: {phone: <its name>})",
                columns=self.columns,
            )

    def _indices(self, names: tuple[str, ...]) -> tuple[int, ...]:
        wanted = [normalise_header(n) for n in names]
        return tuple(self.columns.index(n) for n in wanted if n in self.columns)

    def __iter__(self) -> Iterator[Row | Reject]:
        for line, cells, problem in self.records():
            values = self.values(cells)
            if problem is not None:
                yield Reject(self.path, line, problem, values)
                continue
            found = self.identify(cells)
            if isinstance(found, str):
                yield Reject(self.path, line, found, values)
            else:
                yield Row(self.path, line, *found, values)

    def records(self) -> Iterator[tuple[int, list[str], str | None]]:
        """``(line, cells, problem)`` for every non-blank record; ``problem`` says why
        the record's shape is unusable (then it is a reject whatever its values)."""
        reader = self._reader
        count = len(self.columns)
        line_end = 1
        while True:
            line = line_end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over 128 KiB; the next row reads on
                line_end = reader.line_num
                yield line, [], f"unreadable row ({exc})"
                continue
            except UnicodeDecodeError as exc:
                # Rejecting the rest would drop people silently: refuse the whole file.
                raise RecipientsError(f"{self.path}: {_not_utf8(self.path, exc)}") from None
            line_end = reader.line_num
            if not "".join(cells).strip():
                continue  # blank lines are layout, not recipients
            if line_end > line and any("\n" in cell or "\r" in cell for cell in cells):
                # Usually a quote left open, which swallows the rows after it; template
                # parameters cannot hold line breaks anyway (Meta rejects them).
                yield line, cells, f"a field spans lines {line}-{line_end} (a quote left open?)"
            elif len(cells) != count:
                yield line, cells, f"{len(cells)} fields where the header has {count}"
            else:
                yield line, cells, None

    def values(self, cells: list[str]) -> dict[str, str]:
        return dict(zip(self.columns, cells, strict=False))

    def identify(self, cells: list[str]) -> tuple[str | None, str | None, str | None] | str:
        """``(msisdn, bsuid, parent_bsuid)`` of a well-formed record, or why it has none."""
        found = self.parts(cells)
        if isinstance(found, str):
            return found
        phone, region = found[0], found[1]
        return row_identifiers(normalise_msisdn(phone, region) if phone else None, found)

    def parts(self, cells: list[str]) -> Parts | str:
        """A record's identifiers before the phone number is normalised (the costly
        step, which ``dispatcher.audience.passes`` may hand to another process)."""
        phone = _first(cells, self._phone)
        bsuid_raw = _first(cells, self._bsuid) if self._bsuid else ""
        parent_raw = _first(cells, self._parent) if self._parent else ""
        if not (phone or bsuid_raw or parent_raw):
            return "empty: no phone number or BSUID"
        region = self.default_region
        if phone and self._country:
            region = _first(cells, self._country).upper() or region
        if not (bsuid_raw or parent_raw):
            return phone, region, None, None, None
        bsuid = parent = problem = None
        if bsuid_raw:
            bsuid, parent = classify_bsuid(bsuid_raw)
            if bsuid is None and parent is None:
                problem = "malformed BSUID (expected CC.<id>)"
        if parent_raw and problem is None:
            _, parent_checked = classify_bsuid(parent_raw)
            if parent_checked is None:
                problem = "malformed parent BSUID (expected CC.ENT.<id>)"
            parent = parent_checked
        return phone, region, bsuid, parent, problem

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecipientsFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


#: ``(phone cell, its region, bsuid, parent bsuid, problem with the BSUIDs)``.
Parts = tuple[str, str | None, str | None, str | None, str | None]


def row_identifiers(
    msisdn: str | None, parts: Parts
) -> tuple[str | None, str | None, str | None] | str:
    """``RecipientsFile.identify``'s answer, given the normalised phone number."""
    phone, _, bsuid, parent, problem = parts
    if phone and msisdn is None:
        if _SCIENTIFIC.match(phone):
            return (
                "number in scientific notation (e.g. 4.67E+10) lost digits or is "
                "invalid: format the column as text in the spreadsheet"
            )
        return "invalid phone number"
    if problem is not None:
        return problem
    return msisdn, bsuid, parent


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """Where the file stops being UTF-8 (the text reader only knows which chunk)."""
    line = _first_bad_line(path)
    where = f"line {line} is " if line else ""
    return f"{where}not UTF-8 text (byte 0x{exc.object[exc.start]:02x}): save the file as UTF-8"


def _first_bad_line(path: Path) -> int | None:
    """The line of the first byte that is not UTF-8, lines ending as the CSV reader sees
    them (LF, CRLF or CR); read in chunks, so a big file costs no memory."""
    line, carry = 1, b""
    with path.open("rb") as raw:
        while True:
            chunk = raw.read(1 << 16)
            data = carry + chunk
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as exc:
                if exc.reason != "unexpected end of data" or not chunk:
                    return line + len(_LINE_END.findall(data[: exc.start]))
                good = exc.start  # a character cut in two by the chunk: read on
            if not chunk:
                return None
            if data[good - 1 : good] == b"\r":
                good -= 1  # a CR that may pair with an LF at the start of the next chunk
            line += len(_LINE_END.findall(data[:good]))
            carry = data[good:]


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The sniffed dialect; else the delimiter the header line uses most.

    The sniffer gives up on real exports (a quoted ``;`` in one row, blank lines), but
    a header line is a list of names: its most frequent candidate is the delimiter.
    """
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in ",;\t"}
        delimiter = max(counts, key=lambda d: counts[d])
        if not counts[delimiter]:
            return csv.excel

        class Header(csv.excel):
            pass

        Header.delimiter = delimiter
        return Header

    class Sniffed(csv.excel):  # the sniffer's delimiter, Excel's quoting
        pass

    # The sniffer guesses doublequote=False on CRLF files, turning "a""b" into a"b";
    # every spreadsheet writes a quote inside a quoted field as two.
    Sniffed.delimiter = sniffed.delimiter
    Sniffed.quotechar = sniffed.quotechar or '"'
    Sniffed.skipinitialspace = sniffed.skipinitialspace
    return Sniffed


def read_recipients(
    path: Path, default_region: str | None = None, names: ColumnNames | None = None
) -> Iterator[Row | Reject]:
    """Yield every data row of a CSV as a ``Row`` or a ``Reject``."""
    with RecipientsFile(path, default_region, names) as recipients:
        yield from recipients


def _first(cells: list[str], indices: tuple[int, ...]) -> str:
    if len(indices) == 1:
        return cells[indices[0]].strip()
    for index in indices:
        value = cells[index].strip()
        if value:
            return value
    return ""
