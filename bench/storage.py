"""How fast and how lean a campaign's files go into the database and come back out.

Stores, on a throwaway PostgreSQL database, the million-row list of ``bench/load.py``
(generated there and cached under /tmp on first use) and a 16 MB file (LINK's video
limit), each as a campaign registration does (``db.blobs.put``), then fetches each as a
preparing worker does (``blobs.copy_to`` into a file). Prints MB, seconds and MB/s each
way, and the peak RSS of this process (the files are never held whole in memory).

    .venv/bin/python bench/storage.py [--rows 1000000] [--video-mb 16]

PostgreSQL admin URL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--video-mb", type=int, default=16)
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    from bench.load import cached_list
    from dispatcher.db import Database, blobs, migrate

    listing, _ = cached_list(args.rows)
    name = f"storage_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        migrate(url)
        db = Database(url)
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "video.mp4"
            video.write_bytes(os.urandom(args.video_mb * 1024 * 1024))
            for label, path in ((f"{args.rows:,}-row list", listing), ("video", video)):
                size_mb = path.stat().st_size / 1e6
                started = time.perf_counter()
                with db.session() as session:
                    sha, _ = blobs.put(session, path)
                stored = time.perf_counter() - started
                started = time.perf_counter()
                with db.session() as session, (Path(tmp) / "fetched").open("wb") as handle:
                    blobs.copy_to(session, sha, handle)
                fetched = time.perf_counter() - started
                print(
                    f"{label}: {size_mb:.1f} MB stored in {stored:.2f} s "
                    f"({size_mb / stored:.0f} MB/s), fetched in {fetched:.2f} s "
                    f"({size_mb / fetched:.0f} MB/s)"
                )
        db.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
