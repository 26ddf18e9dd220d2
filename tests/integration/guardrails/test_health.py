"""Signals from outside a campaign's outcomes (``guardrails.health``,
``tracking.sender_events``): its template paused or disabled, its sender BLOCKED or
LIMITED, its quality rating dropping. Campaigns are sent through the simulator over
HTTP by the fan-out (the workers' send path), the simulator's controls change the
template or the sender mid-run, and the reports and Meta's webhooks come back through
the webhook app; on PostgreSQL.

"Left after the pause" counts the requests the simulator received after the campaign
was first seen paused: at most one slice (a tenth of a second of the level, 8 at
STANDARD) may already be on its way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from dispatcher.db import Campaign, Database, Message
from dispatcher.guardrails import health, pausing
from dispatcher.operations import control as operator
from dispatcher.providers import Providers
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.sending import fanout
from dispatcher.status import CampaignState
from tests.conftest import BOTH
from tests.integration.resending.test_planner import Stack, start, wait_for

pytestmark = pytest.mark.parametrize("db", ["postgresql"], indirect=True)

SPEC = """
name: Guardrails rehearsal
sender: {source: "+4790000000", level: STANDARD}
message:
  type: template
  template:
    name: hello
    language: en
    components: [{type: body, parameters: [{type: text, text: "{name}"}]}]
recipients: people.csv
"""
PEOPLE = [f"+47413{n:05d}" for n in range(400)]
#: A slice at STANDARD: 80 messages a second, ten slices a second.
SLICE = 8
#: Requests sent before the signal is given.
BEFORE = 40


@dataclass
class Run:
    """What became of a campaign sent while a signal was given mid-way."""

    paused_by: dict[str, Any]
    sent: int  # requests the simulator received for it
    after_pause: int  # of which after the campaign was seen paused
    never_sent: int  # its messages that never left
    template_failures: int  # its messages failed 132015/132016 (left after the template's pause)


def receipts(stack: Stack) -> list[tuple[float, int]]:
    answer = httpx.get(f"{stack.simulator.url}/_simulator/receipts").json()
    return [(float(at), int(n)) for at, n in answer]


def control(stack: Stack, path: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{stack.simulator.url}/_simulator/{path}", json=body)
    assert answer.status_code == 200, answer.text


def state_of(db: Database, campaign_id: int) -> str:
    with db.session() as session:
        return str(session.scalar(select(Campaign.state).where(Campaign.id == campaign_id)))


def campaign_id(db: Database) -> int:
    with db.session() as session:
        found = session.scalar(select(func.max(Campaign.id)))
    assert found is not None
    return found


@pytest.fixture()
def stack(db: Database, redis_url: str, provider: str) -> Iterator[Stack]:
    made = Stack(db, redis_url, {}, provider, record_requests=True)
    yield made
    made.close()


def run(stack: Stack, tmp_path: Path, signal: Callable[[], None], *, poll: bool = False) -> Run:
    """Send the campaign; give ``signal`` once ``BEFORE`` requests have left; with
    ``poll``, poll the senders as the guard tick does (every 0.1 s here, no gate)."""
    batch_ids = start(stack, tmp_path, PEOPLE, SPEC)
    campaign = campaign_id(stack.db)
    sender = fanout.Fanout(stack.ctx.client)
    sending = threading.Thread(
        target=fanout.send_many, args=(stack.ctx, sender, batch_ids, "task-1"), daemon=True
    )
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(stack, stop), daemon=True)
    sending.start()
    try:
        wait_for(lambda: len(receipts(stack)) >= BEFORE)
        signal()
        if poll:
            poller.start()
        seen_paused = _first_seen_paused(stack.db, campaign, sending)
    finally:
        sending.join(30)
        stop.set()
        if poller.is_alive():
            poller.join(10)
        sender.close()
    assert seen_paused is not None, "the campaign was not paused"
    got = receipts(stack)
    with stack.db.session() as session:
        paused_by = session.scalar(select(Campaign.paused_by).where(Campaign.id == campaign))
        never = session.scalar(
            select(func.count()).where(Message.campaign_id == campaign,
                                       Message.submitted_at.is_(None))
        )  # fmt: skip
        failed = session.scalar(
            select(func.count()).where(Message.campaign_id == campaign,
                                       Message.whatsapp_error_code.in_((132015, 132016)))
        )  # fmt: skip
    assert paused_by is not None and never is not None and failed is not None
    after = sum(n for at, n in got if at > seen_paused)
    return Run(paused_by, sum(n for _, n in got), after, never, failed)


def _first_seen_paused(db: Database, campaign: int, sending: threading.Thread) -> float | None:
    """When the campaign was first seen paused (wall clock, as the simulator's receipts),
    looking every 5 ms while it sends; None when it ended otherwise."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if state_of(db, campaign) == CampaignState.PAUSED:
            return time.time()
        if not sending.is_alive() and state_of(db, campaign) != CampaignState.SENDING:
            return None
        time.sleep(0.005)
    return None


def _poll(stack: Stack, stop: threading.Event) -> None:
    client = link_client(stack.simulator.url)
    try:
        while not stop.is_set():
            health.poll(stack.db, client, None, datetime.now(UTC))
            stop.wait(0.1)
    finally:
        client.close()


def link_client(url: str) -> Providers:
    """A LINK client of its own (the stack's user), as another worker's."""
    credentials = LinkCredentials(url, "u", "pw", "P", "1")
    return Providers(link=LinkClient(credentials, timeout_seconds=5), meta=None)


def assert_stopped_within_a_slice(result: Run) -> None:
    assert result.after_pause <= SLICE
    assert result.never_sent > 0
    assert result.sent + result.never_sent >= len(PEOPLE)


@BOTH
def test_a_template_paused_mid_way_stops_the_campaign_within_one_slice(
    stack: Stack, tmp_path: Path, provider: str
) -> None:
    result = run(
        stack, tmp_path, lambda: control(stack, "templates/status",
                                         {"name": "hello", "status": "PAUSED"})
    )  # fmt: skip
    assert_stopped_within_a_slice(result)
    if provider == "meta":
        # Meta refuses every send of a paused template (132015): the first slice refused
        # pauses the campaign, and at most the next slice was on its way; Meta's webhook
        # may pause it before any send was refused (a busy machine: seen in CI).
        assert result.template_failures <= 2 * SLICE
    assert result.paused_by["reason"] == "template_paused"
    assert result.paused_by["figure"] == "template 'hello' (en) PAUSED"
    assert result.paused_by["threshold"] == "APPROVED"
    # LINK reports 132015 for each send of it; Meta refuses them at once with it, and
    # says so in its webhook as well
    assert "132015" in result.paused_by["detail"] or "PAUSED webhook" in result.paused_by["detail"]


def test_a_disabled_template_said_by_meta_webhook_alone_pauses_its_campaign(
    stack: Stack, tmp_path: Path
) -> None:
    stack.provider = "meta"
    batch_ids = start(stack, tmp_path, PEOPLE[:20], SPEC)
    campaign = campaign_id(stack.db)
    sender = fanout.Fanout(stack.ctx.client)
    try:
        fanout.send_many(stack.ctx, sender, batch_ids[:10], "task-1")
    finally:
        sender.close()
    control(stack, "templates/status", {"name": "hello", "language": "en", "status": "DISABLED"})
    wait_for(lambda: state_of(stack.db, campaign) == CampaignState.PAUSED)
    with stack.db.session() as session:
        paused_by = session.scalar(select(Campaign.paused_by).where(Campaign.id == campaign))
    assert paused_by is not None
    assert paused_by["reason"] == "template_disabled"
    assert paused_by["detail"].startswith("Meta's DISABLED webhook")


def test_another_template_paused_leaves_the_campaign_sending(stack: Stack, tmp_path: Path) -> None:
    stack.provider = "meta"
    start(stack, tmp_path, PEOPLE[:5], SPEC)
    campaign = campaign_id(stack.db)
    control(stack, "templates/status", {"name": "welcome", "status": "PAUSED"})
    control(stack, "sender", {"quality_rating": "YELLOW"})  # no webhook: a poll's to see
    health.poll(stack.db, stack.client, None, datetime.now(UTC))
    assert state_of(stack.db, campaign) == CampaignState.SENDING
    with stack.db.session() as session:
        assert session.scalar(select(Campaign.paused_by).where(Campaign.id == campaign)) is None


@BOTH
def test_a_sender_turning_blocked_mid_campaign_stops_it(
    stack: Stack, tmp_path: Path, provider: str
) -> None:
    # LINK: seen by the poll of its phone number information; Meta: its account_update
    # webhook (the account disabled), no poll
    result = run(
        stack, tmp_path, lambda: control(stack, "sender", {"health_status": "BLOCKED"}),
        poll=provider == "link",
    )  # fmt: skip
    assert_stopped_within_a_slice(result)
    assert (result.paused_by["reason"], result.paused_by["figure"]) == (
        "sender_blocked",
        "BLOCKED",
    )
    if provider == "link":
        assert "LINK's phone number information" in result.paused_by["detail"]
        assert (
            "Message templates can only be sent out if they are approved"
            in (result.paused_by["detail"])
        )
    else:
        assert "DISABLED_UPDATE webhook" in result.paused_by["detail"]


@BOTH
def test_quality_dropping_to_red_pauses_the_campaign(
    stack: Stack, tmp_path: Path, provider: str
) -> None:
    result = run(
        stack, tmp_path, lambda: control(stack, "sender", {"quality_rating": "RED"}),
        poll=provider == "link",
    )  # fmt: skip
    assert_stopped_within_a_slice(result)
    assert result.paused_by["reason"] == "quality"
    assert (result.paused_by["figure"], result.paused_by["threshold"]) == (
        "RED",
        "YELLOW or better",
    )
    description = pausing.describe(result.paused_by)
    assert description.startswith("quality: RED (threshold YELLOW or better)")


def test_limited_pauses_unless_the_campaign_started_limited(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    start(stack, tmp_path / "a", PEOPLE[:5], SPEC)
    fresh = campaign_id(stack.db)
    control(stack, "sender", {"health_status": "LIMITED"})
    start(stack, tmp_path / "b", PEOPLE[5:10], SPEC.replace("rehearsal", "second"))
    started_limited = campaign_id(stack.db)
    health.poll(stack.db, stack.client, None, datetime.now(UTC))
    assert state_of(stack.db, fresh) == CampaignState.PAUSED
    assert state_of(stack.db, started_limited) == CampaignState.SENDING
    with stack.db.session() as session:
        paused_by = session.scalar(select(Campaign.paused_by).where(Campaign.id == fresh))
    assert paused_by is not None
    assert (paused_by["reason"], paused_by["figure"]) == ("sender_limited", "LIMITED")


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"health_status": "LIMITED"}, "sender_limited"), ({"quality_rating": "RED"}, "quality")],
)
def test_a_resume_at_a_standing_limited_or_red_number_is_not_paused_again(
    stack: Stack, tmp_path: Path, change: dict[str, str], reason: str
) -> None:
    start(stack, tmp_path, PEOPLE[:5], SPEC)
    campaign = campaign_id(stack.db)
    control(stack, "sender", change)
    health.poll(stack.db, stack.client, None, datetime.now(UTC))
    assert state_of(stack.db, campaign) == CampaignState.PAUSED
    with stack.db.session() as session:
        assert (
            session.scalar(select(Campaign.paused_by).where(Campaign.id == campaign))["reason"]
            == reason
        )
        operator.resume(session, campaign)
    health.poll(stack.db, stack.client, None, datetime.now(UTC))  # the state stands
    assert state_of(stack.db, campaign) == CampaignState.SENDING
    control(stack, "sender", {"health_status": "BLOCKED"})  # news: paused again
    health.poll(stack.db, stack.client, None, datetime.now(UTC))
    assert state_of(stack.db, campaign) == CampaignState.PAUSED


def test_the_poll_asks_once_per_interval_across_workers_and_waits_out_an_unavailable_api(
    stack: Stack, tmp_path: Path
) -> None:
    start(stack, tmp_path, PEOPLE[:5], SPEC)
    campaign = campaign_id(stack.db)
    stack.redis.delete("dispatcher:guardrails:poll:link:+4790000000")
    control(stack, "sender", {"health_status": "BLOCKED"})
    health.poll(stack.db, stack.client, stack.redis, datetime.now(UTC))  # gate taken
    assert state_of(stack.db, campaign) == CampaignState.PAUSED
    with stack.db.session() as session:  # as if resumed: the next poll would pause it
        session.execute(update(Campaign).values(state=CampaignState.SENDING, paused_by=None))
    health.poll(stack.db, stack.client, stack.redis, datetime.now(UTC))  # another worker
    assert state_of(stack.db, campaign) == CampaignState.SENDING  # within the interval
    stack.redis.delete("dispatcher:guardrails:poll:link:+4790000000")
    unreachable = link_client("http://127.0.0.1:9")
    try:
        health.poll(stack.db, unreachable, None, datetime.now(UTC))
    finally:
        unreachable.close()
    assert state_of(stack.db, campaign) == CampaignState.SENDING  # no answer: no signal


@pytest.mark.parametrize("provider", ["link"])
def test_a_template_failure_pauses_its_campaign_as_the_report_arrives(
    stack: Stack, tmp_path: Path
) -> None:
    """The webhook app's look at a 132015 report before its commit and the applier
    (``sender_events.pause_at_once``): the campaign it names by its refId is paused."""
    import json

    from dispatcher.tracking import sender_events

    batch_ids = start(stack, tmp_path, PEOPLE, SPEC)
    campaign = campaign_id(stack.db)
    report = {
        "messageId": "m-not-recorded-yet",
        "refId": batch_ids[0],
        "resultCode": 112403,
        "resultDescription": "(#132015) Template is paused",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    with stack.db.session() as session:
        paused = sender_events.pause_at_once(session, [("dlr", json.dumps(report).encode())])
    assert paused == [campaign]
    assert state_of(stack.db, campaign) == CampaignState.PAUSED
