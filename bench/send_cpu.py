"""CPU per request of the send path: watch the workers of a running throughput benchmark.

Run beside ``bench/throughput.py`` (one campaign at a time). It finds the Celery worker
processes (``celery -A workers worker``), reads the database they use from their
environment, and samples twice a second the CPU of their process trees (user + system,
reaped children included: ``cpu.tree_cpu``) and the campaign's submitted batches. The
figure is the workers' CPU between the moments 30 % and 95 % of the batches were
submitted, divided by the batches (requests) submitted in between: the steady middle
of the sending, without the preparation, the start-up or the tail. Also printed: the
highest peak RSS of a worker process.

    .venv/bin/python bench/send_cpu.py [--yardstick US] [--timeout 600]

With ``--yardstick`` the figure is also printed scaled to the reference yardstick.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu

WORKER = "celery -A workers worker"
LOW, HIGH = 0.30, 0.95


def worker_pids() -> list[int]:
    """The benchmark's worker processes: ``celery ... worker`` in their own argument
    list (not a shell whose script merely names them)."""
    found = subprocess.run(["pgrep", "-f", WORKER], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, found.split()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The benchmark's own (``--hostname bench<n>-...``), not a test's meanwhile.
        named = any(a.startswith(b"bench") for a in argv)
        if b"celery" in argv and b"worker" in argv and named:
            pids.append(pid)
    return pids


def database_url(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"DATABASE_URL="):
            return entry.split(b"=", 1)[1].decode().replace("+psycopg", "")
    return None


def user_system(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes themselves (not their children)."""
    user = system = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / cpu.TICK
        system += int(fields[12]) / cpu.TICK
    return user, system


def progress(url: str) -> tuple[int, int]:
    """(batches submitted, batches) of the newest campaign."""
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FILTER (WHERE state = 'submitted'), count(*) FROM batches"
            " WHERE campaign_id = (SELECT max(id) FROM campaigns)"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--yardstick", type=float, help="us, as bench/cpu.py prints it")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    pids: list[int] = []
    url = None
    while time.monotonic() < deadline and (len(pids) < 1 or url is None):
        pids = worker_pids()
        url = database_url(pids[0]) if pids else None
        time.sleep(0.2)
    if url is None:
        sys.exit("no workers found")
    samples: list[tuple[float, int, int, float]] = []  # (at, submitted, batches, cpu)
    splits: list[tuple[float, float]] = []  # (user, system) of the same samples
    peak = 0.0
    while time.monotonic() < deadline:
        try:
            submitted, batches = progress(url)
        except Exception:  # the database is dropped at the end of the run
            break
        found = worker_pids()
        if not found:  # the benchmark stopped its workers (or failed)
            break
        pids = found
        seconds = sum(cpu.tree_cpu(pid) for pid in pids)
        peak = max([peak, *(cpu.peak_rss_mb(pid) for pid in pids)])
        samples.append((time.monotonic(), submitted, batches, seconds))
        splits.append(user_system(pids))
        if batches and submitted >= batches:
            break
        time.sleep(0.5)
    total = max((s[2] for s in samples), default=0)
    if not total:
        sys.exit("no batches seen")
    first = next(i for i, s in enumerate(samples) if s[1] >= LOW * total)
    last = next((i for i, s in enumerate(samples) if s[1] >= HIGH * total), len(samples) - 1)
    low, high = samples[first], samples[last]
    user = splits[last][0] - splits[first][0]
    system = splits[last][1] - splits[first][1]
    requests = high[1] - low[1]
    seconds = high[3] - low[3]
    per_request_ms = 1000 * seconds / max(1, requests)
    print(
        f"{len(pids)} workers: {seconds:.2f} s CPU for {requests:,} requests over "
        f"{high[0] - low[0]:.1f} s = {per_request_ms:.3f} ms per request; "
        f"peak RSS of a worker {peak:.0f} MiB; user {user:.2f} s, system {system:.2f} s"
    )
    if args.yardstick:
        scaled = cpu.at_yardstick(per_request_ms, args.yardstick)
        print(f"at the reference yardstick ({args.yardstick:.0f} -> 250 us): {scaled:.3f} ms")


if __name__ == "__main__":
    main()
