"""Frequency caps across campaigns (``guardrails.caps``): campaigns prepared and sent
through the LINK simulator over HTTP, the cap judged over every identifier of a person
and every sender number of the portfolio."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatcher.audience import book
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Message
from dispatcher.db.timestamps import aware
from dispatcher.guardrails import caps
from dispatcher.interfaces.terminal import ExitCode
from dispatcher.operations.progress import outcomes, progress
from dispatcher.operations.reports import ROW_COLUMNS
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending import fanout
from dispatcher.sending.batch import SendContext
from dispatcher.settings import get_settings
from dispatcher.simulator.templates import default_templates
from tests.conftest import copy_campaign, dispatcher_command
from tests.e2e.conftest import stack

__all__ = ["stack"]  # the e2e stack fixture (webhook app, simulator, worker with beat)

SENDER, SIBLING, STRANGER = "+4790000000", "+4790000009", "+4790000099"
ADA, BO, CY, DI = "+4741234531", "+4741234532", "+4741234533", "+4741234534"
BSUID = "NO.13491208655302741918"
WEEKLY_TWO = "{messages: 2, period: 7d}"


def _templates() -> list[dict[str, Any]]:
    """The simulator's templates and a UTILITY one, ``receipt``."""
    listed = default_templates()
    hello = next(t for t in listed if t["name"] == "hello")
    return [*listed, {**hello, "name": "receipt", "category": "UTILITY"}]


SIMULATED = pytest.mark.parametrize("simulator", [{"templates": _templates()}], indirect=True)


@pytest.fixture(autouse=True)
def _portfolio(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SENDER and SIBLING share the portfolio "acme"; STRANGER is another's."""
    monkeypatch.setenv("SENDER_PORTFOLIOS", json.dumps({"acme": [SENDER, SIBLING]}))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def spec(name: str, source: str, cap: str | None, template: str) -> str:
    capped = f"frequency_cap: {cap}\n" if cap is not None else ""
    return f"""\
name: {name}
sender: {{source: "{source}", level: STANDARD}}
message:
  type: template
  template:
    name: {template}
    language: en
    components: [{{type: body, parameters: [{{type: text, text: "{{first_name}}"}}]}}]
recipients: people.csv
default_region: "NO"
{capped}"""


def prepared(
    ctx: SendContext,
    folder: Path,
    rows: list[str],
    *,
    source: str = SENDER,
    cap: str | None = WEEKLY_TWO,
    template: str = "hello",
) -> tuple[int, list[str]]:
    folder.mkdir(parents=True)
    (folder / "campaign.yaml").write_text(spec(folder.name, source, cap, template))
    lines = "\n".join(r if "," in r else f"{r},,P{r[-2:]}" for r in rows)
    (folder / "people.csv").write_text(f"phone,bsuid,first_name\n{lines}\n")
    campaign_id = create_campaign(ctx.db, load_campaign(folder))
    return campaign_id, prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=None)


def sent(
    ctx: SendContext, sender: fanout.Fanout, folder: Path, rows: list[str], **options: Any
) -> int:
    """A campaign prepared and its batches sent; returns its id."""
    campaign_id, batch_ids = prepared(ctx, folder, rows, **options)
    fanout.send_many(ctx, sender, batch_ids, f"task-{campaign_id}")
    return campaign_id


def statuses(ctx: SendContext, campaign_id: int) -> dict[str, str]:
    with ctx.db.session() as session:
        rows = session.execute(
            select(Message.destination, Message.status).where(Message.campaign_id == campaign_id)
        )
        return {destination: status for destination, status in rows}


def report(ctx: SendContext, campaign_id: int) -> dict[str, dict[str, object]]:
    with ctx.db.session() as session:
        rows = [dict(zip(ROW_COLUMNS, r, strict=True)) for r in outcomes(session, campaign_id)]
    return {str(r["destination"]): r for r in rows}


def destinations(simulator: str) -> list[str]:
    requests = httpx.get(f"{simulator}/_simulator/requests").json()
    return [d for r in requests for d in r["destinations"]]


@SIMULATED
def test_the_cap_holds_across_three_campaigns(
    ctx: SendContext, sender: fanout.Fanout, simulator: str, tmp_path: Path
) -> None:
    first = sent(ctx, sender, tmp_path / "one", [ADA, BO, CY])
    sent(ctx, sender, tmp_path / "two", [ADA, BO, DI], source=SIBLING)  # same portfolio
    before = len(destinations(simulator))
    third = sent(ctx, sender, tmp_path / "three", [ADA, BO, CY, DI])

    assert statuses(ctx, third) == {
        ADA: "skipped", BO: "skipped", CY: "submitted", DI: "submitted",
    }  # fmt: skip
    assert sorted(destinations(simulator)[before:]) == [CY, DI]
    with ctx.db.session() as session:
        shown = progress(session, third)
        first_sent = session.scalar(
            select(Message.submitted_at).where(
                Message.campaign_id == first, Message.destination == ADA
            )
        )
    assert shown is not None and shown.skipped == {"frequency_cap": 2}
    assert shown.state == "completed" or shown.waiting_to_send == 0
    assert first_sent is not None
    eligible = aware(first_sent) + timedelta(days=7)
    row = report(ctx, third)[ADA]
    assert row["skip_reason"] == "frequency_cap"
    assert row["attempts"] == 0 and row["submitted_at"] is None
    assert row["result_description"] == (
        "not sent: 2 marketing messages in the last 7d from this portfolio already "
        f"(frequency cap 2 per 7d); eligible from {caps.minute_up(eligible):%Y-%m-%d %H:%M} UTC"
    )


@SIMULATED
def test_the_cap_counts_every_identifier_of_a_person(
    ctx: SendContext, sender: fanout.Fanout, simulator: str, tmp_path: Path
) -> None:
    sent(ctx, sender, tmp_path / "one", [ADA, BO], cap="{messages: 1, period: 7d}")
    with ctx.db.session() as session:  # the book learns Ada's BSUID in this portfolio
        book.learn_links(session, [([ADA, BSUID], book.Source("mo", "message 1", None, "acme"))])
    before = len(destinations(simulator))
    second = sent(ctx, sender, tmp_path / "two", [f",{BSUID},Ada", CY],
                  cap="{messages: 1, period: 7d}")  # fmt: skip

    with ctx.db.session() as session:
        rows = session.execute(
            select(Message.identifiers, Message.status, Message.skip_reason).where(
                Message.campaign_id == second
            )
        ).all()
    by_status = {status: (sorted(ids or []), reason) for ids, status, reason in rows}
    assert by_status["skipped"] == (sorted([ADA, BSUID]), "frequency_cap")
    assert destinations(simulator)[before:] == [CY]


@SIMULATED
def test_another_portfolio_is_not_counted(
    ctx: SendContext, sender: fanout.Fanout, tmp_path: Path
) -> None:
    one = "{messages: 1, period: 7d}"
    sent(ctx, sender, tmp_path / "elsewhere", [ADA], source=STRANGER, cap=one)
    second = sent(ctx, sender, tmp_path / "here", [ADA], cap=one)
    assert statuses(ctx, second) == {ADA: "submitted"}
    third = sent(ctx, sender, tmp_path / "again", [ADA], source=SIBLING, cap=one)
    assert statuses(ctx, third) == {ADA: "skipped"}


@SIMULATED
def test_a_utility_campaign_is_neither_capped_nor_counted(
    ctx: SendContext, sender: fanout.Fanout, tmp_path: Path
) -> None:
    one = "{messages: 1, period: 7d}"
    receipt = sent(ctx, sender, tmp_path / "receipt", [ADA], cap=one, template="receipt")
    with ctx.db.session() as session:  # the provider's category, learned in pre-flight
        stored = session.get(Campaign, receipt)
        assert stored is not None and stored.spec["template_category"] == "utility"
    promo = sent(ctx, sender, tmp_path / "promo", [ADA], cap=one)
    assert statuses(ctx, promo) == {ADA: "submitted"}
    again = sent(ctx, sender, tmp_path / "receipt2", [ADA], cap=one, template="receipt")
    assert statuses(ctx, again) == {ADA: "submitted"}
    last = sent(ctx, sender, tmp_path / "promo2", [ADA], cap=one)
    assert statuses(ctx, last) == {ADA: "skipped"}


@SIMULATED
def test_frequency_cap_off_opts_out_of_the_setting(
    ctx: SendContext, sender: fanout.Fanout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FREQUENCY_CAP", json.dumps({"messages": 1, "period": "7d"}))
    get_settings.cache_clear()
    sent(ctx, sender, tmp_path / "one", [ADA], cap=None)
    # Quoted: YAML 1.1 reads a bare off as false.
    opted_out = sent(ctx, sender, tmp_path / "two", [ADA], cap='"off"')
    assert statuses(ctx, opted_out) == {ADA: "submitted"}
    capped = sent(ctx, sender, tmp_path / "three", [ADA], cap=None)  # the setting's cap
    assert statuses(ctx, capped) == {ADA: "skipped"}


@SIMULATED
def test_messages_waiting_to_leave_count(ctx: SendContext, tmp_path: Path) -> None:
    """A campaign prepared but not yet sent holds its people: one prepared after it
    does not write them too."""
    one = "{messages: 1, period: 7d}"
    first, _ = prepared(ctx, tmp_path / "one", [ADA, BO], cap=one)
    second, _ = prepared(ctx, tmp_path / "two", [ADA, CY], cap=one)
    assert statuses(ctx, first) == {ADA: "queued", BO: "queued"}
    assert statuses(ctx, second) == {ADA: "skipped", CY: "queued"}


@SIMULATED
def test_a_second_preparation_waits_for_the_portfolio_lock(
    ctx: SendContext, tmp_path: Path
) -> None:
    """PostgreSQL: the cap's lookup and the writing of a campaign's people hold the
    portfolio's lock; another campaign's preparation looks only after."""
    if ctx.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite prepares one campaign at a time")
    one = "{messages: 1, period: 7d}"
    first, _ = prepared(ctx, tmp_path / "one", [ADA], cap=one)
    done = threading.Event()
    result: list[int] = []

    def second() -> None:
        result.append(prepared(ctx, tmp_path / "two", [ADA, CY], cap=one)[0])
        done.set()

    with caps.exclusive(ctx.db, "acme"):
        thread = threading.Thread(target=second)
        thread.start()
        assert not done.wait(1.5)  # held behind the lock
    assert done.wait(30)
    thread.join()
    assert statuses(ctx, result[0]) == {ADA: "skipped", CY: "queued"}
    assert statuses(ctx, first) == {ADA: "queued"}


def dispatcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        dispatcher_command(*args), env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(
    "stack",
    [{"FREQUENCY_CAP": '{"messages": 1, "period": "7d"}', "SIMULATOR_FAILURE_RATE": "0"}],
    indirect=True,
)
def test_a_campaign_run_twice_by_a_worker_skips_everyone_the_first_reached(
    stack: dict[str, str], tmp_path: Path
) -> None:
    """The FREQUENCY_CAP setting, two runs of the example campaign by a Celery worker:
    the second writes its 190 people (200 rows, 5 rejected, 5 merged) skipped, with the
    date, and sends nobody."""
    first = dispatcher(stack, "run", str(copy_campaign("example", tmp_path / "one")),
                       "--timeout", "120")  # fmt: skip
    assert first.returncode == ExitCode.OK, first.stdout + first.stderr
    second = dispatcher(stack, "run", str(copy_campaign("example", tmp_path / "two")),
                        "--again", "--timeout", "120")  # fmt: skip
    assert second.returncode == ExitCode.NOBODY_SENT, second.stdout + second.stderr
    shown = dispatcher(stack, "status", "2").stdout
    assert re.search(r"skipped: frequency_cap\W+190\b", shown), shown
    assert re.search(r"submitted\W+0\b", shown), shown
    rows = list(csv.DictReader(io.StringIO(dispatcher(stack, "report", "2").stdout)))
    assert Counter(row["status"] for row in rows) == {"skipped": 190, "merged": 5}
    for row in rows:
        if row["status"] == "skipped":
            assert row["skip_reason"] == "frequency_cap" and row["attempts"] == "0"
            assert "(frequency cap 1 per 7d); eligible from " in row["result_description"]
