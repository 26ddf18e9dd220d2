"""LINK's own failure codes and Meta's 131062, over real HTTP to the simulator.

Seed 004 lists only WhatsApp codes as "subject for resends"; 112000 (Unknown error) and
112408 (System error) say "Contact support". 131062 (a BSUID is not allowed for this
message, seed 000) is sent once more to the person's phone number when one is known.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign
from dispatcher.db import Database
from dispatcher.operations import progress
from dispatcher.operations.reports import write_outcomes
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.resending import planner as resend
from dispatcher.sending.batch import Outcome
from tests.conftest import BOTH, through
from tests.integration.resending.test_planner import (
    SPEC,
    Stack,
    settled,
    start,
    statuses,
    wait_for,
)


def test_contact_support_codes_are_final_not_resent(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    unknown, system = "+4741234531", "+4741234532"
    stack = stack_for({}, scripted_results={unknown: [112000], system: [112408]})
    assert set(stack.send(start(stack, tmp_path, [unknown, system]))) == {Outcome.SUBMITTED}
    wait_for(settled(db, {unknown: "failed", system: "failed"}))
    assert stack.resend_due() == []
    assert statuses(db) == {unknown: ("failed", 1, "final"), system: ("failed", 1, "final")}
    assert stack.received() == {unknown: 1, system: 1}


BSUID_SPEC = SPEC.replace("recipients: people.csv", "recipients: people.csv\nsend_to: bsuid")


@BOTH
def test_131062_for_a_bsuid_is_sent_once_more_to_the_known_phone_number(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path, provider: str
) -> None:
    phone, bsuid = "+4741234541", "NO.13491208655302741941"
    lone = "NO.13491208655302741942"  # no phone number known: stays failed
    stack = stack_for({bsuid: [131062], lone: [131062]})
    (tmp_path / "campaign.yaml").write_text(through(provider, BSUID_SPEC))
    (tmp_path / "people.csv").write_text(f"phone,bsuid,name\n{phone},{bsuid},A\n,{lone},B\n")
    campaign_id = create_campaign(stack.db, preflight(tmp_path).loaded)
    batches = prepare_campaign(stack.db, stack.client, campaign_id, reports_dir=tmp_path / "r")
    assert set(stack.send(batches)) == {Outcome.SUBMITTED}
    wait_for(settled(db, {bsuid: "failed", lone: "failed"}))
    assert set(stack.resend_due()) == {Outcome.SUBMITTED}
    wait_for(settled(db, {phone: "read"}))
    assert stack.resend_due() == []
    assert statuses(db) == {phone: ("read", 2, None), lone: ("failed", 1, "final")}
    assert stack.received() == {bsuid: 1, phone: 1, lone: 1}
    with db.session() as session:
        shown = progress.progress(session, campaign_id)
        handle = io.StringIO()
        write_outcomes(handle, progress.outcomes(session, campaign_id))
    assert shown is not None and shown.resent_to_phone == 1
    lines = {r["destination"]: r for r in csv.DictReader(io.StringIO(handle.getvalue()))}
    assert lines[phone]["result_description"] == resend.TO_PHONE_NOTE
    assert (lines[phone]["status"], lines[phone]["attempts"]) == ("read", "2")
    assert lines[lone]["whatsapp_error_code"] == "131062"
