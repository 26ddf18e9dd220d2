"""CPU accounting for the benchmarks: by process kind, from /proc, and a yardstick.

A process kind's CPU is user + system time of its whole process tree: the live
processes, and the children already ended and reaped (``cutime`` + ``cstime`` of the
parent), so an applier child counts as the webhook app's and an ended PostgreSQL backend
as PostgreSQL's (the postmaster reaps them). Take a ``Snapshot`` before and after a run;
``Snapshot.since`` gives each kind's seconds in between.

These machines run at different speeds from hour to hour, so every CPU figure is printed
with the **yardstick** measured in the same run: microseconds per naive phonenumbers
parse + ``is_valid_number`` of a fixed list of international numbers. Goals are stated
at a yardstick of 250 us; ``at_yardstick`` scales a figure to it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
#: The yardstick the project's CPU goals are stated at (microseconds).
REFERENCE_YARDSTICK_US = 250.0


@dataclass(frozen=True, slots=True)
class _Stat:
    pid: int
    ppid: int
    own: float  # utime + stime
    reaped: float  # cutime + cstime: ended children, waited for


def _stat(pid: int) -> _Stat | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return _Stat(
        pid,
        int(fields[1]),
        (int(fields[11]) + int(fields[12])) / TICK,
        (int(fields[13]) + int(fields[14])) / TICK,
    )


def _all() -> dict[int, _Stat]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[stat.pid] = stat
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def tree_cpu(root: int, stats: Mapping[int, _Stat] | None = None) -> float:
    """CPU seconds of ``root`` and every descendant, live or reaped."""
    stats = stats if stats is not None else _all()
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if (stat := stats.get(pid)) is not None:
            total += stat.own + stat.reaped
            todo.extend(children.get(pid, ()))
    return total


def service_roots(name: str) -> list[int]:
    """The oldest processes called ``name`` whose parent is not one (postmaster,
    redis-server)."""
    stats = _all()
    named = {pid for pid in stats if _comm(pid) == name}
    return sorted(pid for pid in named if stats[pid].ppid not in named)


@dataclass(slots=True)
class Snapshot:
    """CPU seconds so far of each kind: kinds map to process-tree roots."""

    seconds: dict[str, float] = field(default_factory=dict)
    at: float = 0.0

    @classmethod
    def take(cls, kinds: Mapping[str, Iterable[int]]) -> Snapshot:
        stats = _all()
        return cls(
            {kind: sum(tree_cpu(pid, stats) for pid in roots) for kind, roots in kinds.items()},
            time.monotonic(),
        )

    def since(self, before: Snapshot) -> dict[str, float]:
        return {kind: value - before.seconds.get(kind, 0.0) for kind, value in self.seconds.items()}


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (``VmHWM``), MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


YARDSTICK_ROWS = 20_000


def yardstick_us() -> float:
    """Microseconds per number of ``bench/load.py``'s naive path (phonenumbers ``parse``
    + ``is_valid_number``, metadata loaded on first use as in any fresh process) over
    20,000 numbers of its messy international list, timed in a fresh process: the
    figure ``bench/load.py`` prints, this machine's speed now."""
    import subprocess
    import sys
    import tempfile

    cache = Path(tempfile.gettempdir()) / f"dispatcher-yardstick-{YARDSTICK_ROWS}.csv"
    here = str(Path(__file__).resolve().parent)
    if not cache.exists():
        subprocess.run(
            [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import load; "
             "from pathlib import Path; load.generate(Path(sys.argv[2]), int(sys.argv[3]))",
             here, str(cache), str(YARDSTICK_ROWS)],
            check=True, capture_output=True,
        )  # fmt: skip
    timed = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import load; "
         "from pathlib import Path; print(load.naive_rate(Path(sys.argv[2]), int(sys.argv[3])))",
         here, str(cache), str(YARDSTICK_ROWS)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return 1e6 / float(timed.stdout.strip().splitlines()[-1])


def at_yardstick(value: float, yardstick: float) -> float:
    """``value`` measured at ``yardstick`` us, scaled to the reference yardstick."""
    return value * REFERENCE_YARDSTICK_US / yardstick


if __name__ == "__main__":
    print(f"yardstick: {yardstick_us():.0f} us per naive parse + is_valid_number")
