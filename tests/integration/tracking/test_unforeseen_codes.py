"""A status report whose resultCode LINK's table does not list is stored, answered 200
and applied: a final failure with its code and description, seen in status and report,
and the campaign completes (seed 004 'Possible resultCodes in Message Status
Notifications'). Over real HTTP: the simulator reports the codes to the webhook app."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from dispatcher.campaigns import lifecycle
from dispatcher.db import Database, DeliveryReport, Message
from dispatcher.operations import progress
from dispatcher.operations.reports import write_outcomes
from dispatcher.sending.batch import Outcome
from tests.integration.resending.test_planner import (
    Stack,
    settled,
    start,
    wait_for,
)

UNLISTED = "+4741234521"  # 112999: not in the table
REQUEST_CODE = "+4741234522"  # 112506: an ErrorResponse code in a report
REDIS_ERROR = "+4741234523"  # 112409: the table's "12409 Redis error", as LINK numbers others
FINE = "+4741234524"


def test_an_unlisted_result_code_is_applied_as_a_final_failure_and_the_campaign_completes(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    results = {UNLISTED: [112999], REQUEST_CODE: [112506], REDIS_ERROR: [112409]}
    stack = stack_for({}, scripted_results=results)
    batches = start(stack, tmp_path, [UNLISTED, REQUEST_CODE, REDIS_ERROR, FINE])
    assert set(stack.send(batches)) == {Outcome.SUBMITTED}
    expected = {UNLISTED: "failed", REQUEST_CODE: "failed", REDIS_ERROR: "unknown", FINE: "read"}
    wait_for(settled(db, expected))
    wait_for(lambda: not report_states(db) & {"received", "unmatched"})
    # Each answered 200 and applied (a late 'sent' after 'read' changes nothing), none
    # kept invalid.
    assert report_states(db) <= {"applied", "ignored"}
    assert stack.resend_due() == []  # final: not resent
    with db.session() as session:
        codes = dict(session.execute(select(Message.destination, Message.result_code)).all())
        assert (codes[UNLISTED], codes[REQUEST_CODE], codes[REDIS_ERROR]) == (
            112999, 112506, 112409,
        )  # fmt: skip
        campaign_id = session.scalar(select(Message.campaign_id).limit(1))
        assert campaign_id is not None
        assert lifecycle.complete_if_settled(session, campaign_id)
    with db.session() as session:
        shown = progress.progress(session, campaign_id)
        assert shown is not None and shown.state == "completed"
        assert shown.failures == {"112999": 1, "112506": 1}
        handle = io.StringIO()
        write_outcomes(handle, progress.outcomes(session, campaign_id))
    lines = {r["destination"]: r for r in csv.DictReader(io.StringIO(handle.getvalue()))}
    assert lines[UNLISTED]["result_code"] == "112999"
    assert lines[UNLISTED]["result_description"] == "scripted result code 112999"
    assert lines[UNLISTED]["retry_class"] == "final"
    assert stack.received() == dict.fromkeys(expected, 1)


def report_states(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(DeliveryReport.state)))
