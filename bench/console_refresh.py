"""What one open campaign page in the console costs while the campaign sends.

A campaign of 100,000 messages (a tenth failed with three WhatsApp codes, the rest
delivered or read, a few hundred merged rows) on PostgreSQL; each part of its page is
built as the console builds it, five times, and the median printed: the counts (what
``/console/live/campaigns/ID`` answers every 2 s), and the chart, the failures and the
merged and rejected rows (its ``/outcomes`` region, every 10 s and when the state
changes).
The last lines give the time a minute of one open page takes, refreshed every part
every 2 s as before and as the page refreshes now. Wall time in this process: the
database's work and the page's Python together, on the same 2 cores as the senders.

    .venv/bin/python bench/console_refresh.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput as tp
from sqlalchemy import insert

from dispatcher.db import Campaign, Database, MergedRow, Message, migrate
from dispatcher.interfaces import actions
from dispatcher.interfaces.web.charts import chart
from dispatcher.operations import insight
from dispatcher.status import CampaignState

START = datetime.now(UTC) - timedelta(hours=1)
CODES = (131049, 131026, 131048)


def fill(db: Database, messages: int) -> int:
    """A sending campaign of ``messages`` people, submitted at 80 a second."""
    draw = random.Random(1)
    with db.session() as session:
        campaign = Campaign(name="bench", spec={}, spec_path="/dev/null",
                            source="+4790000000", state=CampaignState.SENDING,
                            level="STANDARD", rate_per_second=80)  # fmt: skip
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    rows: list[dict[str, Any]] = []
    for i in range(messages):
        at = START + timedelta(seconds=i / 80)
        row: dict[str, Any] = {
            "campaign_id": campaign_id, "identity_key": f"k{i}", "destination": f"+47{i:08d}",
            "source_line": i + 2, "params": {}, "status": "delivered", "submitted_at": at,
            "sent_at": at + timedelta(seconds=2), "delivered_at": at + timedelta(seconds=3),
        }  # fmt: skip
        luck = draw.random()
        if luck < 0.1:
            failed = at + timedelta(seconds=5)
            row |= {"status": "failed", "delivered_at": None, "failed_at": failed,
                    "result_code": 112403, "whatsapp_error_code": draw.choice(CODES),
                    "result_description": "(#131049) drawn failure"}  # fmt: skip
        elif luck < 0.5:
            row |= {"status": "read", "read_at": at + timedelta(seconds=60)}
        rows.append(row)
        if len(rows) == 10_000:
            _write(db, rows)
            rows = []
    _write(db, rows)
    with db.session() as session:
        session.execute(
            insert(MergedRow),
            [{"campaign_id": campaign_id, "file": "recipients.csv", "line": i + 3,
              "identifiers": [f"+47{i:08d}"], "kept_file": "recipients.csv",
              "kept_line": i + 2, "description": "same phone number"}
             for i in range(0, messages, 250)],
        )  # fmt: skip
    return campaign_id


def _write(db: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        with db.session() as session:
            session.execute(insert(Message), rows)


def median_ms(work: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    url = tp.create_database()
    try:
        migrate(url)
        db = Database(url)
        campaign_id = fill(db, args.messages)

        def now() -> object:
            return actions.status_document(db, campaign_id)

        def outcomes() -> object:
            with db.session() as session:
                insight.failures(session, campaign_id)
                return chart(insight.timeline(session, campaign_id))

        def rows() -> object:
            with db.session() as session:
                insight.merges(session, campaign_id, limit=201)
                return insight.rejects(session, campaign_id, limit=200)

        cost_now, cost_outcomes, cost_rows = median_ms(now), median_ms(outcomes), median_ms(rows)
        db.dispose()
    finally:
        tp.drop_database(url)
    print(f"one open campaign page, {args.messages:,} messages, PostgreSQL (median of 5)")
    print(f"  counts             {cost_now:7.1f} ms   /console/live/campaigns/ID, every 2 s")
    print(f"  chart + failures   {cost_outcomes:7.1f} ms   .../outcomes, every 10 s")
    print(f"  merged + rejected  {cost_rows:7.1f} ms   with the chart, every 10 s")
    before = 30 * (cost_now + cost_outcomes + cost_rows)
    after = 30 * cost_now + 6 * (cost_outcomes + cost_rows)
    print(f"  a minute of one open page: {before / 1000:.2f} s when every part came every 2 s, "
          f"{after / 1000:.2f} s now ({before / after:.1f}x less)")  # fmt: skip


if __name__ == "__main__":
    main()
