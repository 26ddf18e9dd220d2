"""How fast a million-row recipients list is loaded, normalised, resolved and stored.

Generates (once, cached under /tmp) a CSV of ROWS rows with numbers from every region
phonenumbers knows, in the formats spreadsheets produce (E.164, '00' prefix, the '+'
stripped, national with a ``country`` column, spaces, dashes, parentheses), about 5 %
of the people listed a second time by another identifier (the same number in another
format; their BSUID with the number; their BSUID alone, or their parent BSUID with the
BSUID, when another row links it to the number), and 1 % invalid rows (too short,
malformed BSUID, empty). Rows are shuffled, so a linking row often comes last.

Before the run, the throwaway database's identity book is filled (by COPY, timed
apart) with BOOK links as DLRs teach them, a number and its BSUID: a quarter for
people in the list (their number and their own BSUID, so no link joins two people
planted), the rest for numbers and BSUIDs the list does not hold.

Then, in a child process (so its peak RSS is the pipeline's own), the campaign is
registered (its files stored in the database, timed apart) and a dry run of a
personalised template campaign (``{first_name}``) on a throwaway PostgreSQL database:
both passes over the file, the identity book and suppression lookups, and every
message and batch written; and the naive path (phonenumbers ``parse`` +
``is_valid_number`` per number) on a sample of the same numbers.

Printed: the book's fill time, rows/s, wall time, peak RSS (of the preparing process,
and of the child that normalises phone numbers beside it), people / duplicates /
rejects found against the numbers planted, and the naive path's rate.

    .venv/bin/python bench/load.py [--rows 1000000] [--book 1000000] [--sample 20000]

``--book`` counts rows of the book (a number and its BSUID are two); 0: an empty book.

PostgreSQL admin URL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import multiprocessing
import os
import random
import resource
import string
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatcher.audience.phone import e164  # noqa: E402
from dispatcher.audience.recipients import normalise_msisdn  # noqa: E402

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NAMES = [
    f"{a}{b}"
    for a in ("An", "Bo", "Ca", "Da", "El", "Fa", "Gu", "Ha")
    for b in ("na", "ris", "lo", "mir", "ti", "ssa", "ko", "rek", "ud", "ine")
]
SPEC = """\
name: Load benchmark
sender: {source: "+4790000000", level: HIGH}
template_category: marketing
message:
  type: template
  template:
    name: welcome
    language: en
    components:
      - type: body
        parameters:
          - {type: text, text: "{first_name}"}
recipients: recipients.csv
default_region: "NO"
batch_size: 100
"""


def numbers_by_region(per_region: int, rng: random.Random) -> list[tuple[str, str]]:
    """``(E.164, region)`` valid numbers: each region's example mobile (else fixed-line)
    number with its last digits varied, kept when valid."""
    found: list[tuple[str, str]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number_for_type(
            region, phonenumbers.PhoneNumberType.MOBILE
        ) or phonenumbers.example_number(region)
        if example is None:
            continue
        digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        kept: set[str] = set()
        for _ in range(per_region * 3):
            tail = "".join(rng.choices(string.digits, k=4))
            candidate = digits[:-4] + tail
            if e164(candidate, None) == candidate:
                kept.add(candidate)
            if len(kept) >= per_region:
                break
        found.extend((number, region) for number in sorted(kept))
    return found


def formatted(number: str, region: str, rng: random.Random) -> tuple[str, str]:
    """``(phone cell, country cell)`` for a number, as some spreadsheet might hold it.

    A form that means another number (digits without '+' that are also a valid
    Norwegian number, the campaign's default region) is written as E.164 instead:
    the benchmark counts people, and such a cell genuinely names someone else.
    """
    phone, country = _formatted(number, region, rng)
    if normalise_msisdn(phone, country or "NO") != number:
        return number, ""
    return phone, country


def _formatted(number: str, region: str, rng: random.Random) -> tuple[str, str]:
    parsed = phonenumbers.parse(number, None)
    style = rng.random()
    if style < 0.35:
        return number, ""
    if style < 0.50:
        return "00" + number[1:], ""
    if style < 0.62:
        return number[1:], ""  # Excel dropped the '+'
    if style < 0.80:
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        return national, region
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return international.replace(" ", rng.choice([" ", "-", " "])), ""


def bsuid(region: str, rng: random.Random, parent: bool = False) -> str:
    body = "".join(rng.choices(string.ascii_letters + string.digits, k=24))
    return f"{region}.ENT.{body}" if parent else f"{region}.{body}"


def generate(
    path: Path, rows: int, seed: int = 7, persons_path: Path | None = None
) -> dict[str, int]:
    """Write the CSV (and, to ``persons_path``, each person's number and BSUID, which
    the identity book is filled from); returns what was planted."""
    rng = random.Random(seed)
    invalid = rows // 100
    duplicates = rows * 5 // 100
    people = rows - invalid - duplicates
    pool = numbers_by_region(max(1, people // 200), rng)
    while len(dict(pool)) < people:  # top up
        pool.extend(numbers_by_region(max(1, people // 100), random.Random(len(pool))))
    unique = dict(pool)  # a number listed under two regions of one calling code counts once
    chosen = rng.sample(sorted(unique.items()), people)
    records: list[list[str]] = []
    persons: list[tuple[str, str, str, str]] = []
    for number, region in chosen:
        ids = (number, region, bsuid(region, rng), bsuid(region, rng, parent=True))
        persons.append(ids)
        phone, country = formatted(number, region, rng)
        with_bsuid = rng.random() < 0.3
        records.append([phone, ids[2] if with_bsuid else "", "", country, rng.choice(NAMES)])
    for number, region, user, parent in rng.sample(persons, duplicates):
        phone, country = formatted(number, region, rng)
        kind = rng.random()
        if kind < 0.4:
            records.append([phone, "", "", country, rng.choice(NAMES)])  # another format
        elif kind < 0.8:
            records.append([phone, user, "", country, rng.choice(NAMES)])  # BSUID + number
        else:  # BSUID and parent BSUID, plus a third row linking the BSUID to the number
            records.append(["", user, parent, "", rng.choice(NAMES)])
            records.append([phone, user, "", country, rng.choice(NAMES)])
    extra = len(records) - people - duplicates  # third rows of the last kind
    for index in range(invalid):
        kind = index % 3
        if kind == 0:
            records.append(["+47123", "", "", "", "x"])  # too short
        elif kind == 1:
            records.append(["", "not-a-bsuid", "", "", "x"])
        else:
            records.append(["", "", "", "", "x"])  # no identifier at all
    rng.shuffle(records)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "bsuid", "parent_bsuid", "country", "first_name"])
        writer.writerows(records)
    if persons_path is not None:
        with persons_path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows((number, user) for number, _, user, _ in persons)
    return {
        "rows": len(records),
        "people": people,
        "invalid": invalid,
        "duplicates": duplicates + extra,
    }


def run_dry_run(folder: str, url: str, result: dict[str, object]) -> None:
    """In the child: the dry run, timed, and its peak RSS."""
    from dispatcher.campaigns.registration import create_campaign
    from dispatcher.campaigns.spec import load_campaign
    from dispatcher.db import Database
    from dispatcher.preparation.prepare import prepare_campaign
    from dispatcher.providers import offline_provider

    phases: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            phases.append(record.getMessage())

    logging.getLogger("dispatcher.preparation.prepare").addHandler(Collect())
    logging.getLogger("dispatcher.preparation.prepare").setLevel(logging.INFO)
    db = Database(url)
    started = time.perf_counter()
    campaign_id = create_campaign(db, load_campaign(Path(folder)))
    # Registration stores the list in the database; preparation reads it from there.
    result["register_seconds"] = time.perf_counter() - started
    client = offline_provider()
    started = time.perf_counter()
    prepare_campaign(db, client, campaign_id, reports_dir=Path(folder) / "reports", dry_run=True)
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the phone number normaliser (``dispatcher.audience.normaliser``), a child that has ended
    result["child_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result["campaign_id"] = campaign_id
    result["phases"] = phases


def naive_rate(path: Path, sample: int) -> float:
    """Numbers per second through phonenumbers itself, on the file's own numbers."""
    cells: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["phone"]:
                cells.append((row["phone"], row["country"] or "NO"))
            if len(cells) >= sample:
                break
    started = time.perf_counter()
    for phone, region in cells:
        try:
            parsed = phonenumbers.parse(phone, region)
        except phonenumbers.NumberParseException:
            continue
        phonenumbers.is_valid_number(parsed)
    return len(cells) / (time.perf_counter() - started)


def quiet(admin: Any) -> None:
    """Start from a quiet server: the previous run's dirty pages are written out now,
    not by a checkpoint in the middle of this one (needs a superuser or pg_checkpoint;
    skipped otherwise)."""
    try:
        with admin.connect() as connection:
            connection.execute(text("CHECKPOINT"))
    except Exception as exc:
        print(f"(no CHECKPOINT before the run: {exc.__class__.__name__})")


def cache_dir(rows: int) -> Path:
    return Path(tempfile.gettempdir()) / f"dispatcher-load-{rows}"


def cached_list(rows: int) -> tuple[Path, dict[str, int]]:
    """The list of ``rows`` rows and what was planted in it, generated once under /tmp
    (again, identically, for a cache from before ``persons.csv``)."""
    cache = cache_dir(rows)
    csv_path, planted_path = cache / "recipients.csv", cache / "planted.json"
    persons_path = cache / "persons.csv"
    if not planted_path.exists() or not persons_path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        fresh = cache / "recipients.csv.new"  # a reader of the old file keeps reading it
        found = generate(fresh, rows, persons_path=persons_path)
        fresh.replace(csv_path)
        planted_path.write_text(json.dumps(found))
        print(f"generated {csv_path} in {time.perf_counter() - started:.1f} s")
    planted: dict[str, int] = json.loads(planted_path.read_text())
    return csv_path, planted


def book_rows(rows: int, links: int, seed: int = 11) -> Iterator[tuple[str, str, str]]:
    """``links`` rows ``(identifier, kind, person key)`` of a book a DLR would have
    taught: pairs of a number (the person key) and its BSUID; a quarter of them people
    of the list, each with their own BSUID, the rest numbers and BSUIDs not in it."""
    rng = random.Random(seed)
    with (cache_dir(rows) / "persons.csv").open(encoding="utf-8", newline="") as handle:
        persons = [(number, user) for number, user in csv.reader(handle)]
    listed = rng.sample(persons, min(len(persons), links // 8))
    taken = {identifier for pair in persons for identifier in pair}
    strangers: list[tuple[str, str]] = []
    for index in itertools.count():
        if len(strangers) >= (links - 2 * len(listed) + 1) // 2:
            break
        number = f"+{4790000000 + index}"
        user = "NO." + "".join(rng.choices(string.ascii_letters + string.digits, k=24))
        if number not in taken and user not in taken:
            strangers.append((number, user))
    pairs = listed + strangers
    rng.shuffle(pairs)
    written = 0
    for number, user in pairs:
        for identifier, kind in ((number, "msisdn"), (user, "bsuid")):
            if written == links:
                return
            yield identifier, kind, number
            written += 1


def fill_book(url: str, rows: int, links: int) -> float:
    """COPY the book's rows into ``identities`` (only the columns every schema has
    without a default), then ANALYZE it; returns the seconds it took."""
    import psycopg

    started = time.perf_counter()
    now = datetime.now(UTC)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY identities (identifier, kind, person_key, learned_from, learned_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for identifier, kind, person_key in book_rows(rows, links):
                copy.write_row((identifier, kind, person_key, "dlr", now))
        connection.commit()
        connection.autocommit = True
        connection.execute("ANALYZE identities")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--book", type=int, default=1_000_000, help="identity book rows")
    parser.add_argument("--sample", type=int, default=20_000)
    args = parser.parse_args()
    csv_path, planted = cached_list(args.rows)
    size_mb = csv_path.stat().st_size / 1e6
    name = f"load_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        from dispatcher.db import Database, Message, migrate
        from dispatcher.db.models import Campaign

        migrate(url)
        if args.book > 0:
            took = fill_book(url, args.rows, args.book)
            print(f"identity book: {args.book:,} links filled in {took:.1f} s")
        quiet(admin)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "campaign.yaml").write_text(SPEC)
            (Path(folder) / "recipients.csv").symlink_to(csv_path)
            with multiprocessing.Manager() as manager:
                result = manager.dict()
                child = multiprocessing.get_context("spawn").Process(
                    target=run_dry_run, args=(folder, url, result)
                )
                child.start()
                child.join()
                if child.exitcode != 0:
                    raise SystemExit(f"the dry run failed (exit {child.exitcode})")
                outcome = dict(result)
        db = Database(url)
        with db.session() as session:
            campaign = session.get(Campaign, outcome["campaign_id"])
            assert campaign is not None
            stored = session.scalar(select(func.count()).where(Message.campaign_id == campaign.id))
            loaded, rejected, duplicates = campaign.loaded, campaign.rejected, campaign.duplicates
            state = campaign.state
        db.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    seconds = float(outcome["seconds"])  # type: ignore[arg-type]
    naive = naive_rate(csv_path, args.sample)
    print(
        f"file: {planted['rows']:,} rows, {size_mb:.0f} MB; planted {planted['people']:,} "
        f"people, {planted['duplicates']:,} duplicate rows, {planted['invalid']:,} invalid"
    )
    print(
        f"dry run ({state}): loaded {loaded:,}, people stored {stored:,}, "
        f"duplicates {duplicates:,}, rejected {rejected:,}"
    )
    ok = stored == planted["people"] and rejected == planted["invalid"]
    print(f"matches what was planted: {'yes' if ok else 'NO'}")
    print(
        f"load -> normalise -> resolve -> persist: {seconds:.2f} s, "
        f"{loaded / seconds:,.0f} rows/s, peak RSS {outcome['peak_rss_mb']:.0f} MB "
        f"(its normaliser child: {outcome['child_rss_mb']:.0f} MB)"
    )
    print(
        f"registration (validation, digest, the file stored in the database): "
        f"{float(outcome['register_seconds']):.2f} s"  # type: ignore[arg-type]
    )
    for phase in outcome["phases"]:  # type: ignore[attr-defined]
        print(f"  {phase}")
    print(
        f"naive phonenumbers parse + is_valid_number on {args.sample:,} of these numbers: "
        f"{naive:,.0f} numbers/s ({1e6 / naive:.0f} us each; "
        f"{args.rows / naive:.0f} s for {args.rows:,})"
    )


if __name__ == "__main__":
    main()
