"""Hypothesis against both webhook endpoints over real HTTP, on SQLite and PostgreSQL:
whatever LINK (or anyone holding the token) posts, the answer is 200 or 400 with a
reason, never a 500, the body is in the raw store either way, and the applier behind it
keeps going."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from dispatcher.db import Database, DeliveryReport
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import create_app
from dispatcher.tracking.intake import MAX_BODY_BYTES
from tests.conftest import FUZZ_CASES
from tests.integration.conftest import SENT, TOKEN, Receiver, incoming, make_batch

FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
RESULT_CODES = st.sampled_from([112002, 112003, 112006, 112007, 112008, 112403, 112404, 12409])


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A valid body with keys replaced, dropped or added."""
    body = dict(valid)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(body)) | st.text(max_size=10))
        action = draw(st.sampled_from(["replace", "drop", "code"]))
        if action == "drop":
            body.pop(key, None)
        elif action == "code":
            body["resultCode"] = draw(RESULT_CODES | st.integers())
        else:
            body[key] = draw(json_values)
    as_list = draw(st.booleans())
    return json.dumps([body] if as_list else body, allow_nan=True).encode()


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return (
        mutated(valid)
        | json_values.map(lambda value: json.dumps(value).encode())
        | st.binary(max_size=300)
    )


@pytest.fixture()
def webhooks(db: Database) -> Iterator[Receiver]:
    """The webhook app on loopback, its applier on a thread."""
    app = create_app(db, token=TOKEN, applier="thread")
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=20) as http:
        yield Receiver(app, http)


def _check(receiver: Receiver, db: Database, path: str, body: bytes) -> None:
    before = _count(db)
    response = receiver.post(path, body)
    assert response.status_code in (200, 400), (response.status_code, response.text)
    if response.status_code == 400:
        answer = response.json()
        assert answer["error"].strip()
        stored_id = answer["stored"]
    else:
        stored_id = int(response.headers["x-report-id"])
    assert _count(db) == before + 1
    with db.session() as session:
        row = session.get(DeliveryReport, stored_id)
        assert row is not None and row.body == body[:MAX_BODY_BYTES]
    receiver.wait_applied()  # the applier went through it and is still running


def _count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryReport)) or 0)


@FUZZ
@given(body=bodies(SENT))
@example(body=b'{"messageId": "m1", "resultCode": 112006, "timestamp": "9999-99-99"}')
@example(body=b"[" * 10_000 + b"]" * 10_000)
@example(body=json.dumps({**SENT, "resultCode": 2**80}).encode())
def test_the_dlr_endpoint_never_answers_500_and_stores_every_body(
    webhooks: Receiver, db: Database, body: bytes
) -> None:
    FUZZ_CASES["DLR webhook endpoint"] += 1
    if not _count(db):
        make_batch(db, ["+4791234567"], link_ids=["m1"])
    _check(webhooks, db, "/webhooks/link/dlr", body)


@FUZZ
@given(body=bodies(incoming({"type": "text", "text": {"body": "STOP"}})))
@example(body=json.dumps(incoming({"type": "button", "button": None})).encode())
def test_the_mo_endpoint_never_answers_500_and_stores_every_body(
    webhooks: Receiver, db: Database, body: bytes
) -> None:
    FUZZ_CASES["MO webhook endpoint"] += 1
    _check(webhooks, db, "/webhooks/link/mo", body)
