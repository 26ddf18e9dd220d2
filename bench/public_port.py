"""The webhook app's public port under attack, as deployed (``dispatcher serve`` in
production mode on PostgreSQL): genuine LINK callbacks paced at 3,000/s while 200 slow
clients trickle request heads and a flood of unauthenticated posts (2,000/s, from 50
addresses) hits the same port. Prints the genuine callbacks' p50/p99 and whether any
was lost, what the flood was answered, and how often the slow clients were cut off.

    .venv/bin/python bench/public_port.py [any bench/dlr_ingest.py option]

It is ``bench/dlr_ingest.py`` with these defaults (a later option wins).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

DEFAULTS = ["--messages", "30000", "--rate", "3000", "--slow-clients", "200", "--flood", "2000"]

if __name__ == "__main__":
    ingest = Path(__file__).resolve().with_name("dlr_ingest.py")
    sys.argv = [str(ingest), *DEFAULTS, *sys.argv[1:]]
    runpy.run_path(str(ingest), run_name="__main__")
