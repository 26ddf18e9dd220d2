from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Base, Batch, Campaign, Database, DeliveryReport, Message, migrate
from dispatcher.interfaces.edge import guarded_protocol
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import WebhookApp
from dispatcher.interfaces.webhooks import create_app as create_webhook_app
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.providers import IncomingReport, Providers, StatusReport, parse_callback
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.providers.meta.client import MetaClient, MetaCredentials
from dispatcher.sending import fanout
from dispatcher.sending.batch import SendContext
from dispatcher.sending.throttle import Throttle
from dispatcher.settings import get_settings, opt_out_keywords
from dispatcher.simulator import SimulatorConfig, create_app
from dispatcher.status import BatchState, CampaignState, MessageStatus
from dispatcher.tracking import apply as tracking
from dispatcher.tracking.intake import read_body
from tests.conftest import free_port, through

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def migrated_pg(pg_url: str) -> str:
    migrate(pg_url)
    return pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same tests against both supported databases."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        migrate(url)
    else:
        url = request.getfixturevalue("migrated_pg")
    database = Database(url)
    if request.param == "postgresql":
        _truncate(database)  # the shared database may hold other tests' rows
    yield database
    if request.param == "postgresql":
        _truncate(database)
    database.dispose()


def _truncate(database: Database) -> None:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with database.session() as session:
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def key_headers(db: Database, scope: str = "read", name: str | None = None) -> dict[str, str]:
    """A new API key's bearer header (the internal listener asks one of every caller)."""
    from dispatcher.operations import access

    with db.session() as session:
        _, secret = access.create_key(session, name or f"test-{scope}", access.Scope(scope))
    return {"Authorization": f"Bearer {secret}"}


def make_batch(db: Database, destinations: list[str], *, link_ids: list[str] | None = None) -> str:
    """A sending campaign with one batch of ``destinations`` (submitted if ids are given)."""
    with db.session() as session:
        campaign = Campaign(
            name="t",
            spec={},
            spec_path="/dev/null",
            source="+4790000000",
            state=CampaignState.SENDING,
        )
        session.add(campaign)
        session.flush()
        batch_id = f"c{campaign.id}-b000001"
        session.add(
            Batch(
                id=batch_id,
                campaign_id=campaign.id,
                seq=1,
                payload={"messages": []},
                size=len(destinations),
                state=BatchState.SUBMITTED if link_ids else BatchState.SUBMITTING,
            )
        )
        session.flush()
        for position, destination in enumerate(destinations):
            session.add(
                Message(
                    campaign_id=campaign.id,
                    identity_key=destination,
                    destination=destination,
                    source_line=position + 2,
                    params={},
                    batch_id=batch_id,
                    position=position,
                    link_message_id=link_ids[position] if link_ids else None,
                    status=MessageStatus.SUBMITTED if link_ids else MessageStatus.QUEUED,
                )
            )
    return batch_id


# -- the LINK simulator, and a send context on it ------------------------------------------


@pytest.fixture()
def simulator(request: pytest.FixtureRequest) -> Iterator[str]:
    """The LINK simulator over real HTTP on loopback (user ``u``, password ``pw``,
    platform ``P``, requests recorded); parametrize indirectly with a dict of
    ``SimulatorConfig`` options."""
    options: dict[str, Any] = getattr(request, "param", {})
    defaults = {"username": "u", "password": "pw", "platform_id": "P", "record_requests": True}
    with ServerThread(create_app(SimulatorConfig(**{**defaults, **options}))) as server:
        yield server.url


_OPEN: list[tuple[Providers, redis.Redis]] = []
#: The simulator's default Meta account (``SimulatorConfig``) and its number's id.
META_TOKEN, META_WABA_ID = "demo-token", "102290129340398"


def context(db: Database, redis_url: str, url: str, password: str = "pw") -> SendContext:
    """A send context on the simulator at ``url``: LINK (user ``u``) and Meta (its
    default account) both, each campaign through the one its spec names."""
    credentials = LinkCredentials(
        base_url=url, username="u", password=password, platform_id="P", platform_partner_id="1"
    )
    client = Providers(
        link=LinkClient(credentials, timeout_seconds=5),
        meta=MetaClient(MetaCredentials(url, META_TOKEN, "v23.0", META_WABA_ID), timeout_seconds=5),
    )
    connection = redis.Redis.from_url(redis_url)
    _OPEN.append((client, connection))
    return SendContext(db=db, client=client, throttle=Throttle(connection), event_report_gate=None)


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        client, connection = _OPEN.pop()
        client.close()
        connection.close()


@pytest.fixture()
def ctx(db: Database, redis_url: str, simulator: str) -> SendContext:
    return context(db, redis_url, simulator)


@pytest.fixture()
def sender(ctx: SendContext) -> Iterator[fanout.Fanout]:
    made = fanout.Fanout(ctx.client)
    yield made
    made.close()


PERSONAL_SPEC = """\
name: Personal
sender: {source: "+4790000000", level: STANDARD}
template_category: marketing
message:
  type: template
  template:
    name: hello
    language: en
    components: [{type: body, parameters: [{type: text, text: "{first_name}"}]}]
recipients: people.csv
"""


def personalised(ctx: SendContext, folder: Path, people: int, provider: str = "link") -> list[str]:
    folder.mkdir()
    (folder / "campaign.yaml").write_text(through(provider, PERSONAL_SPEC))
    rows = "\n".join(f"+479{n:07d},P{n}" for n in range(1000001, 1000001 + people))
    (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
    campaign_id = create_campaign(ctx.db, load_campaign(folder))
    return prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=folder / "r")


# -- webhook bodies ---------------------------------------------------------------------------


def dlr(message_id: str, code: int, ref_id: str = "r", **extra: object) -> bytes:
    body = {
        "messageId": message_id,
        "refId": ref_id,
        "messageType": "MediaTemplateMessage",
        "messageIndex": 0,
        "timestamp": "2026-03-03T12:34:51Z",
        "resultCode": code,
        "resultDescription": extra.pop("description", "ok"),
        "customParameters": extra.pop("custom", {}),
    }
    return json.dumps(body).encode()


def store_body(session: Session, kind: str, body: bytes) -> int:
    """Keep a webhook body as the receiver does (``intake.read_body``); returns its id."""
    row = read_body(kind, body).row()
    return int(
        session.scalars(insert(DeliveryReport).values(**row).returning(DeliveryReport.id)).one()
    )


def parse_dlrs(body: bytes) -> list[StatusReport]:
    """The status reports of a status callback body, as the applier reads them."""
    return list(parse_callback("dlr", body).statuses)


def parse_incoming(body: bytes) -> IncomingReport:
    """The message of an incoming-message callback body, as the applier reads it."""
    return parse_callback("mo", body).incoming[0]


def receive(db: Database, body: bytes) -> str:
    with db.session() as session:
        report_id = store_body(session, "dlr", body)
    with db.session() as session:
        states = [tracking.apply_dlr(session, report_id, d) for d in parse_dlrs(body)]
    return states[0]


def incoming(content: dict[str, Any], **custom: str) -> dict[str, Any]:
    return {
        "destination": "+4790000000",
        "source": "+4791234567",
        "content": {"type": "WHATSAPP", "message": content},
        "provider": "whatsapp",
        "timestamp": "2026-03-21T17:41:58Z",
        "messageId": "8aU6cwxAKE9NzMLrS6M82Y",
        "customParameters": custom or None,
    }


TOKEN = "s3cret-token"
SENT = {
    "messageId": "m1",
    "refId": "r",
    "messageType": "text",
    "messageIndex": 0,
    "timestamp": "2026-03-03T12:34:51Z",
    "resultCode": 112006,
    "resultDescription": "sent",
}
AUTH = {"X-Webhook-Token": TOKEN}


@dataclass
class Receiver:
    app: WebhookApp
    http: httpx.Client

    def dlr(self, body: dict[str, Any] | str | bytes) -> httpx.Response:
        return self.post("/webhooks/link/dlr", body)

    def mo(self, body: dict[str, Any] | str | bytes) -> httpx.Response:
        return self.post("/webhooks/link/mo", body)

    def post(self, path: str, body: dict[str, Any] | str | bytes) -> httpx.Response:
        content = json.dumps(body) if isinstance(body, dict) else body
        return self.http.post(path, content=content, headers=AUTH)

    def wait_applied(self) -> None:
        """Wait until the applier has been through everything stored so far."""
        assert self.app.state.ingest.wait_applied(timeout_seconds=20)


# -- an audience with phone numbers and BSUIDs ------------------------------------------------


PHONE_AND_BSUID_SPEC = """\
name: Audience test
sender: {source: "+4790000000", level: STANDARD}
template_category: marketing
message:
  type: template
  template: {name: hello_world, language: en_US}
recipients: people.csv
default_region: "NO"
batch_size: 5
"""
BSUID = "NO.13491208655302741918"
OFFLINE = LinkClient(LinkCredentials("http://127.0.0.1:9", "u", "p", "P", "1"))  # never called


def campaign(db: Database, folder: Path, rows: list[str]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.yaml").write_text(PHONE_AND_BSUID_SPEC)
    (folder / "people.csv").write_text("phone,bsuid\n" + "\n".join(rows) + "\n")
    return create_campaign(db, load_campaign(folder))


# -- the webhook app over real HTTP ------------------------------------------------------------


@contextlib.contextmanager
def guarded(app: Any, request_timeout: float | None = None) -> Iterator[int]:
    """``app`` under uvicorn with the webhook app's guarded protocol (as ``dispatcher
    serve`` runs it) on a loopback port; yields the port."""
    port = free_port()
    protocol = guarded_protocol() if request_timeout is None else guarded_protocol(request_timeout)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,  # as ``dispatcher serve``: the protocol reaches the app itself
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(params=["direct", "asgi"])
def receiver(db: Database, request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """The webhook app served over real HTTP on loopback (applier on a thread): under
    its guarded protocol, which takes authorised posts directly, as ``dispatcher serve``
    runs it; and as a plain ASGI app under uvicorn's own protocol."""
    app = create_webhook_app(
        db, token=TOKEN, opt_out_words=opt_out_keywords("Avbryt"), applier="thread"
    )
    protocol = None if request.param == "direct" else "httptools"
    with (
        ServerThread(app, http=protocol) as server,
        httpx.Client(base_url=server.url, timeout=20) as http,
    ):
        yield Receiver(app, http)


@pytest.fixture()
def stack_for(db: Database, redis_url: str, provider: str) -> Iterator[Callable[..., Any]]:
    """Makes ``test_planner.Stack``s (simulator and webhook app on loopback, a send
    context on them) from scripted results, sending through ``provider``; each closed
    after the test."""
    from tests.integration.resending.test_planner import Stack

    stacks: list[Stack] = []

    def make(scripted: dict[str, list[int]], **sim: Any) -> Stack:
        stacks.append(Stack(db, redis_url, scripted, provider, **sim))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture()
def cli_db(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The CLI pointed at the test database."""
    monkeypatch.setenv("DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()
