"""What a collation costs the identity book's index work on PostgreSQL.

The schema keeps identifiers in byte order (``dispatcher.db.models.Key``) whatever the
database's default collation. This prints why: a table shaped like ``identities``
(identifier primary key, person key index) in each collation, filled with IDENTIFIERS
phone numbers and BSUIDs in sets of SET (as the applier learns them, ``ON CONFLICT DO
NOTHING``) and then looked up by them in sets of SET, the collations taken in turn
ROUNDS times on a throwaway database; printed: the median milliseconds of each, and
each beside byte order. Collations: the database's default (the server's, or the
template's), "C", and ICU's ``en-US`` where the server has ICU (the libc ``en_US.UTF-8``
of many installations, the official ``postgres`` image's among them, is not always
installed to compare with).

    .venv/bin/python bench/collation.py [--identifiers 60000] [--set 1600] [--rounds 5]

PostgreSQL 15 or later. Admin URL: BENCH_POSTGRES_URL (default
postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import time
import uuid

import psycopg

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_URL = ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")


def identifiers(count: int) -> list[str]:
    """Phone numbers of 8 to 15 digits and BSUIDs (``CC.`` + 24 characters), half each,
    none twice."""
    rng = random.Random(7)
    found: set[str] = set()
    while len(found) < count:
        if rng.random() < 0.5:
            digits = rng.randint(8, 15)  # E.164: country code and number, up to 15
            found.add(f"+{rng.randint(10 ** (digits - 1), 10**digits - 1)}")
        else:
            country = rng.choice(["NO", "US", "BR", "IN"])
            tail = "".join(rng.choices(string.ascii_letters + string.digits, k=24))
            found.add(f"{country}.{tail}")
    values = sorted(found)
    rng.shuffle(values)
    return values


def one_round(
    connection: psycopg.Connection, clause: str, values: list[str], size: int
) -> tuple[float, float]:
    """Seconds to insert ``values`` and to look them up, in sets of ``size``."""
    connection.execute("DROP TABLE IF EXISTS book")
    connection.execute(
        f"CREATE TABLE book (identifier varchar(160) {clause} PRIMARY KEY,"
        f" person_key varchar(160) {clause} NOT NULL, kind varchar(16))"
    )
    connection.execute("CREATE INDEX ON book (person_key)")
    keys = [f"p:{value}" for value in values]
    started = time.perf_counter()
    for at in range(0, len(values), size):
        connection.execute(
            "INSERT INTO book SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[])"
            " ON CONFLICT DO NOTHING",
            (values[at : at + size], keys[at : at + size], ["msisdn"] * len(keys[at : at + size])),
            prepare=False,  # the table is made anew each round, in another collation
        )
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    for at in range(0, len(values), size):
        connection.execute(
            "SELECT identifier, person_key FROM book WHERE identifier = ANY(%s::varchar[])",
            (values[at : at + size],),
            prepare=False,
        ).fetchall()
    return inserted, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identifiers", type=int, default=60_000)
    parser.add_argument("--set", type=int, default=1600, dest="size")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    name = f"collation_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}", autocommit=True) as db:
            default = db.execute(
                "SELECT datcollate, datlocprovider FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            assert default is not None
            collations = {f"database default ({default[0]}, provider {default[1]})": "",
                          'byte order ("C")': 'COLLATE "C"'}  # fmt: skip
            if db.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'").fetchone():
                collations["ICU en-US"] = 'COLLATE "en-US-x-icu"'
            values = identifiers(args.identifiers)
            times: dict[str, list[tuple[float, float]]] = {label: [] for label in collations}
            order = list(collations.items())
            for _ in range(args.rounds):
                random.shuffle(order)  # none always first, or always after another
                for label, clause in order:
                    times[label].append(one_round(db, clause, values, args.size))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"{args.identifiers:,} identifiers in sets of {args.size:,}, {args.rounds} rounds "
          "(median ms; beside byte order)")  # fmt: skip
    medians = {
        label: (statistics.median(i for i, _ in runs), statistics.median(s for _, s in runs))
        for label, runs in times.items()
    }
    base_insert, base_lookup = medians['byte order ("C")']
    for label, (insert, lookup) in medians.items():
        print(
            f"  {label:<40} insert {insert * 1000:6.0f} ({insert / base_insert:4.2f}x)"
            f"   lookup {lookup * 1000:6.0f} ({lookup / base_lookup:4.2f}x)"
        )


if __name__ == "__main__":
    main()
