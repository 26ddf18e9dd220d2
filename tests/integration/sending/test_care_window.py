"""The 24-hour customer care window, judged per business number when a request leaves
(seed 004 '24 hour customer care window'), against the simulator over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import CareWindow, Message
from dispatcher.operations.progress import outcomes, progress
from dispatcher.operations.reports import ROW_COLUMNS
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending import fanout
from dispatcher.sending.batch import Outcome, SendContext, send_batch
from dispatcher.tracking import apply as tracking
from tests.integration.conftest import parse_incoming, store_body

SENDER = "+4790000000"
TEXT_SPEC = f"""
name: Follow-up
sender: {{source: "{SENDER}", level: STANDARD}}
message: {{type: text, text: {{body: "Thanks for writing, {{first_name}}!"}}}}
recipients: people.csv
"""


def write_to(ctx: SendContext, person: str, business: str) -> None:
    """``person`` sends a message to the business number ``business`` (an MO)."""
    body = json.dumps(
        {
            "source": person,
            "destination": business,
            "content": {"type": "WHATSAPP", "message": {"contentType": "TEXT", "text": "hi"}},
        }
    ).encode()
    with ctx.db.session() as session:
        report_id = store_body(session, "mo", body)
        tracking.apply_incoming(session, report_id, parse_incoming(body))


def prepared(ctx: SendContext, folder: Path, rows: str) -> tuple[int, list[str]]:
    folder.mkdir()
    (folder / "campaign.yaml").write_text(TEXT_SPEC)
    (folder / "people.csv").write_text("phone,first_name\n" + rows)
    campaign_id = create_campaign(ctx.db, load_campaign(folder))
    return campaign_id, prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=folder / "r")


def test_a_message_to_another_business_number_opens_no_window_with_this_sender(
    ctx: SendContext, tmp_path: Path
) -> None:
    write_to(ctx, "+4741234531", SENDER)
    write_to(ctx, "+4741234532", "+4790000099")  # a different business's number
    prepared(ctx, tmp_path / "c", "+4741234531,Ada\n+4741234532,Bo\n")
    with ctx.db.session() as session:
        assert list(session.scalars(select(Message.destination))) == ["+4741234531"]
        windows = set(session.execute(select(CareWindow.business, CareWindow.identifier)))
    assert windows == {(SENDER, "+4741234531"), ("+4790000099", "+4741234532")}


@pytest.mark.parametrize("path", ["fan-out", "single batch"])
def test_a_person_whose_window_closed_after_preparation_is_skipped_not_sent(
    ctx: SendContext, sender: fanout.Fanout, simulator: str, tmp_path: Path, path: str
) -> None:
    write_to(ctx, "+4741234531", SENDER)
    write_to(ctx, "+4741234532", SENDER)
    campaign_id, batch_ids = prepared(ctx, tmp_path / "c", "+4741234531,Ada\n+4741234532,Bo\n")
    with ctx.db.session() as session:  # held a day (tier, sending window): Bo's closed
        session.execute(
            update(CareWindow)
            .where(CareWindow.identifier == "+4741234532")
            .values(last_incoming_at=datetime.now(UTC) - timedelta(hours=25))
        )
    if path == "fan-out":
        fanout.send_many(ctx, sender, batch_ids, "task-1")
    else:
        for batch_id in batch_ids:
            send_batch(ctx, batch_id, "task-1")
    sent = [
        d for r in httpx.get(f"{simulator}/_simulator/requests").json() for d in r["destinations"]
    ]
    assert sent == ["+4741234531"]
    with ctx.db.session() as session:
        statuses = {d: s for d, s in session.execute(select(Message.destination, Message.status))}
        assert statuses == {"+4741234531": "submitted", "+4741234532": "skipped"}
        shown = progress(session, campaign_id)
        assert shown is not None and shown.skipped == {"care_window_closed": 1}
        rows = [dict(zip(ROW_COLUMNS, row, strict=True)) for row in outcomes(session, campaign_id)]
    skipped = next(r for r in rows if r["destination"] == "+4741234532")
    assert skipped["skip_reason"] == "care_window_closed"
    assert "customer care window" in str(skipped["result_description"])
    assert skipped["attempts"] == 0


def test_a_batch_whose_people_all_lost_their_window_sends_nothing(
    ctx: SendContext, sender: fanout.Fanout, simulator: str, tmp_path: Path
) -> None:
    write_to(ctx, "+4741234531", SENDER)
    _, batch_ids = prepared(ctx, tmp_path / "c", "+4741234531,Ada\n")
    with ctx.db.session() as session:
        session.execute(
            update(CareWindow).values(last_incoming_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    outcomes_ = fanout.send_many(ctx, sender, batch_ids, "task-1")
    assert set(outcomes_.values()) == {Outcome.SKIPPED}
    assert httpx.get(f"{simulator}/_simulator/stats").json()["requests"] == 0
