"""Worked example campaigns and message rules, prepared and sent through the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import LoadedCampaign
from dispatcher.db import Batch, Campaign, Database, Media
from dispatcher.errors import CampaignSpecError
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending.batch import Outcome, SendContext, send_batch
from dispatcher.tracking import apply as tracking
from tests.conftest import ROOT, copy_campaign
from tests.integration.conftest import parse_incoming, store_body

EXAMPLES = sorted(p.name for p in (ROOT / "campaigns").iterdir() if (p / "campaign.yaml").is_file())


def copy_example(name: str, tmp_path: Path) -> Path:
    return copy_campaign(name, tmp_path / name)


def run(ctx: SendContext, folder: Path, tmp_path: Path) -> int:
    """Register, prepare and send a campaign in this process; returns its id."""
    loaded: LoadedCampaign = preflight(folder).loaded
    campaign_id = create_campaign(ctx.db, loaded, again=True)  # some send a folder twice
    batch_ids = prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=tmp_path / "reports")
    for batch_id in batch_ids:
        assert send_batch(ctx, batch_id, "test") is Outcome.SUBMITTED
    return campaign_id


def requests_seen(simulator: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{simulator}/_simulator/requests").json())


def by_destination(simulator: str) -> dict[str, dict[str, Any]]:
    """Each person's message as the simulator took it: LINK's requests (destinations and
    messages) and Meta's sends (one message to ``to`` or ``recipient`` each)."""
    taken = [
        (request["destinations"], request["messages"][0]) for request in requests_seen(simulator)
    ] + [
        ([send["body"].get("to") or send["body"]["recipient"]], send["body"])
        for send in httpx.get(f"{simulator}/_simulator/meta/requests").json()
    ]
    sent: dict[str, dict[str, Any]] = {}
    for destinations, message in taken:
        for destination in destinations:
            assert destination not in sent, f"{destination} received twice"
            sent[destination] = message
    return sent


def campaign_row(db: Database, campaign_id: int) -> Campaign:
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert found is not None
        return found


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_worked_example_validates_and_is_sent_once_per_person(
    name: str, ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    campaign_id = run(ctx, copy_example(name, tmp_path), tmp_path)
    campaign = campaign_row(ctx.db, campaign_id)
    assert campaign.state == "sending", campaign.error
    sent = by_destination(simulator)
    assert len(sent) == campaign.loaded - campaign.rejected - campaign.duplicates
    assert all(m["type"] == "template" for m in sent.values())


def test_named_parameters_are_personal_and_defaults_fill_empty_cells(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    campaign_id = run(ctx, copy_example("named-parameters", tmp_path), tmp_path)
    sent = by_destination(simulator)
    parameters = {
        destination: {
            p["parameterName"]: p["text"]
            for p in message["template"]["components"][0]["parameters"]
        }
        for destination, message in sent.items()
    }
    assert parameters["+4741234501"] == {"first_name": "Ada", "order_number": "A-1001"}
    assert parameters["+4741234502"] == {"first_name": "there", "order_number": "A-1002"}
    assert "+4741234504" not in parameters  # no order number: rejected, not guessed
    rejects = (tmp_path / "reports" / f"campaign-{campaign_id}" / "rejects.csv").read_text()
    assert "missing value for 'order'" in rejects


def test_recipients_with_identical_content_share_batches_and_others_do_not(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    # 190 people, 3 stores: 3 renderings, each cut into batches of at most 50.
    campaign_id = run(ctx, copy_example("example", tmp_path), tmp_path)
    with ctx.db.session() as session:
        batches = session.execute(
            select(Batch.payload, Batch.size).where(Batch.campaign_id == campaign_id)
        ).all()
    renderings = {json.dumps(payload, sort_keys=True) for payload, _ in batches}
    assert len(renderings) == 3
    assert all(size <= 50 for _, size in batches)
    assert sum(size for _, size in batches) == 190
    stores = {
        m["template"]["components"][1]["parameters"][0]["text"]
        for m in by_destination(simulator).values()
    }
    assert stores == {"Oslo", "Bergen", "Stockholm"}


def test_the_same_file_is_uploaded_once_across_campaigns_and_again_when_changed(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    folder = copy_example("carousel", tmp_path)
    run(ctx, folder, tmp_path)
    run(ctx, folder, tmp_path)
    assert httpx.get(f"{simulator}/_simulator/stats").json()["media_uploads"] == 2  # two cards
    (folder / "card-boots.png").write_bytes((folder / "card-boots.png").read_bytes() + b"\0")
    run(ctx, folder, tmp_path)
    assert httpx.get(f"{simulator}/_simulator/stats").json()["media_uploads"] == 3
    with ctx.db.session() as session:
        assert len(session.scalars(select(Media)).all()) == 3
    carousel = by_destination_last(simulator)["template"]["components"][1]["cards"]
    ids = [card["components"][0]["parameters"][0]["image"]["id"] for card in carousel]
    assert all(ids) and "file" not in json.dumps(carousel)


def by_destination_last(simulator: str) -> dict[str, Any]:
    return dict(requests_seen(simulator)[-1]["messages"][0])


@pytest.mark.parametrize(
    ("file", "content", "reason"),
    [
        ("banner.png", b"GIF89a not a png", "not image/png"),
        ("banner.png", b"\x89PNG\r\n\x1a\n" + b"0" * (16 * 1024 * 1024), "limit"),
        ("banner.gif", b"GIF89a", "unsupported file type"),
    ],
)
def test_a_wrong_or_oversized_media_file_fails_before_anything_is_sent(
    tmp_path: Path, file: str, content: bytes, reason: str
) -> None:
    folder = copy_example("example", tmp_path)
    (folder / file).write_bytes(content)
    spec = (folder / "campaign.yaml").read_text()
    (folder / "campaign.yaml").write_text(spec.replace("file: banner.png", f"file: {file}"))
    with pytest.raises(CampaignSpecError) as caught:
        preflight(folder)
    assert any(reason in message for _, message in caught.value.problems)


AUTH_SPEC = """
name: Login code
sender: {source: "+4790000000", level: STANDARD}
template_category: authentication
message:
  type: template
  template:
    name: login_code
    language: en
    components:
      - type: body
        parameters: [{type: text, text: "{code}"}]
      - type: button
        subType: url
        index: 0
        parameters: [{type: text, text: "{code}"}]
recipients: people.csv
"""


def test_authentication_templates_go_to_phone_numbers_never_to_bsuids(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    (tmp_path / "campaign.yaml").write_text(AUTH_SPEC)
    (tmp_path / "people.csv").write_text(
        "phone,bsuid,code\n+4741234521,NO.111,123456\n,NO.222,654321\n"
    )
    campaign_id = run(ctx, tmp_path, tmp_path)
    assert list(by_destination(simulator)) == ["+4741234521"]
    rejects = (tmp_path / "reports" / f"campaign-{campaign_id}" / "rejects.csv").read_text()
    assert "131062" in rejects


TEXT_SPEC = """
name: Follow-up
sender: {source: "+4790000000", level: STANDARD}
message: {type: text, text: {body: "Thanks for writing, {first_name}!"}}
recipients: people.csv
"""


def test_a_text_message_reaches_only_people_inside_the_care_window(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    incoming = json.dumps(
        {
            "source": "+4741234531",
            "destination": "+4790000000",  # the sender's number: its window opens
            "content": {"message": {"contentType": "TEXT", "text": "hi"}},
        }
    ).encode()
    with ctx.db.session() as session:
        report_id = store_body(session, "mo", incoming)
        tracking.apply_incoming(session, report_id, parse_incoming(incoming))
    (tmp_path / "campaign.yaml").write_text(TEXT_SPEC)
    (tmp_path / "people.csv").write_text("phone,first_name\n+4741234531,Ada\n+4741234532,Bo\n")
    campaign_id = run(ctx, tmp_path, tmp_path)
    sent = by_destination(simulator)
    assert list(sent) == ["+4741234531"]
    assert sent["+4741234531"]["text"]["body"] == "Thanks for writing, Ada!"
    rejects = (tmp_path / "reports" / f"campaign-{campaign_id}" / "rejects.csv").read_text()
    assert "outside the 24-hour customer care window" in rejects
