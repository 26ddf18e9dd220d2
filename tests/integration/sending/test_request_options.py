"""The MessageRequest's optional fields from the spec (seed 004 'MessageRequest'):
``relativeValidityTime`` instead of the absolute time when the spec asks, and
``platformServiceType`` / ``platformServiceId`` / ``platformTransactionId`` as given.
Over real HTTP: the simulator validates and records each request."""

from __future__ import annotations

from pathlib import Path

import httpx

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending.batch import Outcome, SendContext, send_batch
from tests.integration.conftest import PERSONAL_SPEC

OPTIONS = """\
validity_minutes: 60
validity_as: relative
"""
SENDER = (
    'sender: {source: "+4790000000", level: STANDARD, platform_service_type: SMS_WA, '
    "platform_service_id: svc-7, platform_transaction_id: tx-2026-1}"
)


def sent_bodies(
    ctx: SendContext, simulator: str, folder: Path, spec: str
) -> list[dict[str, object]]:
    folder.mkdir()
    (folder / "campaign.yaml").write_text(spec)
    (folder / "people.csv").write_text("phone,first_name\n+4791000001,Ada\n")
    campaign_id = create_campaign(ctx.db, load_campaign(folder))
    batches = prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=folder / "r")
    assert [send_batch(ctx, b, "t") for b in batches] == [Outcome.SUBMITTED]
    recorded = httpx.get(f"{simulator}/_simulator/requests").json()
    return list(recorded)


def test_relative_validity_and_platform_fields_reach_link(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    spec = PERSONAL_SPEC.replace('sender: {source: "+4790000000", level: STANDARD}', SENDER)
    (body,) = sent_bodies(ctx, simulator, tmp_path / "c", spec + OPTIONS)
    assert "absoluteValidityTime" not in body
    assert 3_590_000 < body["relativeValidityTime"] <= 3_600_000  # type: ignore[operator]
    assert (body["platformServiceType"], body["platformServiceId"],
            body["platformTransactionId"]) == ("SMS_WA", "svc-7", "tx-2026-1")  # fmt: skip


def test_absolute_validity_stays_the_default_and_no_platform_fields_are_invented(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    (body,) = sent_bodies(ctx, simulator, tmp_path / "c", PERSONAL_SPEC + "validity_minutes: 60\n")
    assert "relativeValidityTime" not in body and "absoluteValidityTime" in body
    assert not {"platformServiceType", "platformServiceId", "platformTransactionId"} & set(body)
