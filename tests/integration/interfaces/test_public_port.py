"""The webhook app's public port, read as an attacker would: no open door in production,
no internal pages, no storage for strangers, no connection held by a slow client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from dispatcher.db import Database, DeliveryReport
from dispatcher.interfaces.edge import COUNTERS, CallerLimits
from dispatcher.interfaces.webhooks import create_app
from tests.conftest import dispatcher_command, free_port, wait_http
from tests.integration.conftest import AUTH, SENT, TOKEN, guarded, incoming, key_headers


def _env(**values: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "INTERNAL_", "META_"))
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env | values


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"DATABASE_URL": "postgresql+psycopg://x@127.0.0.1/x"}, [], "WEBHOOK_TOKEN is not set"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, ["--host", "0.0.0.0"], "WEBHOOK_TOKEN"),
        (
            {"REDIS_URL": "redis://127.0.0.1:6379/0"},
            ["--no-auth", "--host", "0.0.0.0"],
            "--no-auth is accepted only on loopback",
        ),
        ({}, ["--host", "0.0.0.0"], "WEBHOOK_TOKEN is not set"),
        (
            {"WEBHOOK_TOKEN": "t", "META_BASE_URL": "https://graph.facebook.com"},
            ["--host", "0.0.0.0"],
            "META_APP_SECRET is not set",
        ),
    ],
)
def test_serve_refuses_to_run_open(env: dict[str, str], args: list[str], named: str) -> None:
    done = subprocess.run(
        dispatcher_command("serve", "--port", str(free_port()), *args),
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert named in " ".join(done.stdout.split())
    assert "Traceback" not in done.stderr


@dataclass
class Served:
    public: httpx.Client
    internal: httpx.Client
    db: Database
    key: str  # a read key's bearer token


@pytest.fixture()
def served(own_pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Served]:
    """``dispatcher serve`` in production mode, as deployed."""
    port, internal_port = free_port(), free_port()
    env = _env(
        DATABASE_URL=own_pg_url,
        REDIS_URL=redis_url,
        WEBHOOK_TOKEN=TOKEN,
        DISPATCHER_STATE_DIR=str(tmp_path / "state"),
    )
    process = subprocess.Popen(
        dispatcher_command("serve", "--port", str(port), "--internal-port", str(internal_port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = Database(own_pg_url)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, process)
        wait_http(f"http://127.0.0.1:{internal_port}/healthz", 10, process)
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as public,
            httpx.Client(base_url=f"http://127.0.0.1:{internal_port}", timeout=10) as internal,
        ):
            bearer = key_headers(db)["Authorization"].removeprefix("Bearer ")
            yield Served(public, internal, db, bearer)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        db.dispose()


def test_internal_pages_answer_only_on_the_internal_listener_with_an_api_key(
    served: Served,
) -> None:
    bearer = {"Authorization": f"Bearer {served.key}"}
    assert served.public.get("/healthz").status_code == 200
    for path in ("/metrics", "/campaigns/1", "/api/campaigns", "/console/"):
        assert served.public.get(path).status_code == 404, path
        assert served.public.get(path, headers=bearer).status_code == 404, path
    for path in ("/metrics", "/campaigns/1"):
        assert served.internal.get(path).status_code == 401, path
        wrong = {"Authorization": "Bearer wcd_0_wrong"}
        assert served.internal.get(path, headers=wrong).status_code == 401, path
    assert served.internal.get("/metrics", headers=bearer).status_code == 200
    assert served.internal.get("/campaigns/1", headers=bearer).json() == {
        "error": "no such campaign"
    }


def test_strangers_are_refused_limited_and_never_stored_while_link_is_never_limited(
    served: Served,
) -> None:
    forged_dlr = json.dumps(SENT | {"customParameters": {"whatsappUserId": "US.1"}})
    forged_mo = json.dumps(incoming({"type": "text", "text": "STOP"}, whatsappUserId="US.2"))
    answers: Counter[int] = Counter()
    for i in range(60):
        path = "/webhooks/link/dlr" if i % 2 else "/webhooks/link/mo"
        answers[
            served.public.post(path, content=forged_mo if i % 2 == 0 else forged_dlr).status_code
        ] += 1
        # A wrong token is no token.
        answers[served.public.post(f"{path}?token=guess", content=forged_dlr).status_code] += 1
    assert set(answers) == {401, 429} and answers[429] >= 60, answers
    # From the same address, the caller with the token is taken every time.
    genuine = [
        served.public.post("/webhooks/link/dlr", content=json.dumps(SENT), headers=AUTH)
        for _ in range(30)
    ]
    assert [r.status_code for r in genuine] == [200] * 30
    with served.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 30
    bearer = {"Authorization": f"Bearer {served.key}"}
    metrics = served.internal.get("/metrics", headers=bearer).text
    assert f'dispatcher_webhook_refused_total{{reason="rate_limited"}} {answers[429]}.0' in metrics
    assert f'dispatcher_webhook_refused_total{{reason="unauthorised"}} {answers[401]}.0' in metrics


def test_the_caller_behind_a_trusted_proxy_is_the_forwarded_address() -> None:
    limits = CallerLimits(per_second=1, trusted_proxies=frozenset({"10.0.0.0/8"}))

    def scope(peer: str, forwarded: str | None) -> dict[str, object]:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return {"client": (peer, 1234), "headers": headers}

    assert limits.caller(scope("10.0.0.5", "203.0.113.9")) == "203.0.113.9"
    # Spoofed entries before the proxy's own are skipped: the last untrusted one counts.
    assert limits.caller(scope("10.0.0.5", "1.1.1.1, 203.0.113.9, 10.0.0.7")) == "203.0.113.9"
    # Anyone else's X-Forwarded-For is ignored.
    assert limits.caller(scope("198.51.100.1", "203.0.113.9")) == "198.51.100.1"
    assert limits.allow(scope("10.0.0.5", "203.0.113.9"))
    assert not limits.allow(scope("10.0.0.5", "203.0.113.9"))
    assert limits.allow(scope("10.0.0.5", "203.0.113.10"))  # another caller, its own limit


# -- slow clients -----------------------------------------------------------------------


@pytest.fixture()
def guarded_server(db: Database) -> Iterator[int]:
    """The webhook app under uvicorn with a 0.5 s deadline on each request."""
    with guarded(create_app(db, token=TOKEN, applier="thread"), 0.5) as port:
        yield port


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""  # closed without an answer
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slow_clients_are_cut_off_while_callbacks_keep_flowing(guarded_server: int) -> None:
    before = COUNTERS.slow_clients
    head = b"POST /webhooks/link/dlr HTTP/1.1\r\nHost: x\r\n"
    silent = socket.create_connection(("127.0.0.1", guarded_server))
    partial_head = socket.create_connection(("127.0.0.1", guarded_server))
    partial_head.sendall(head)
    partial_body = socket.create_connection(("127.0.0.1", guarded_server))
    token = f"X-Webhook-Token: {TOKEN}\r\n".encode()  # LINK's own, yet too slow
    partial_body.sendall(head + token + b"Content-Length: 500\r\n\r\n" + b"{" * 10)
    # One keep-alive caller posting every 0.2 s for longer than the deadline: never cut.
    with httpx.Client(base_url=f"http://127.0.0.1:{guarded_server}", timeout=5) as http:
        statuses = []
        for _ in range(8):
            statuses.append(
                http.post("/webhooks/link/dlr", content=json.dumps(SENT), headers=AUTH).status_code
            )
            with contextlib.suppress(OSError):  # trickling does not extend the deadline
                partial_head.sendall(b"X: y\r\n")
            time.sleep(0.2)
    assert statuses == [200] * 8
    for name, sock in (("silent", silent), ("head", partial_head), ("body", partial_body)):
        assert _closed_by_server(sock, within=2.0), name
        sock.close()
    assert COUNTERS.slow_clients - before == 3


def _answers(sock: socket.socket, count: int) -> list[int]:
    """The status codes of ``count`` responses read from ``sock``, in order."""
    sock.settimeout(10)
    data, statuses = b"", list[int]()
    while len(statuses) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {statuses}"
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            if len(rest) < length:
                break
            statuses.append(int(head[9:12]))
            data = rest[length:]
    return statuses


def test_a_refused_request_leaves_the_connection_usable_and_answers_in_order(
    guarded_server: int,
) -> None:
    body = json.dumps(SENT).encode()

    def post(token: bool) -> bytes:
        auth = f"X-Webhook-Token: {TOKEN}\r\n".encode() if token else b""
        return (
            b"POST /webhooks/link/dlr HTTP/1.1\r\nHost: x\r\n"
            + auth
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(post(token=False))
        assert _answers(sock, 1) == [401]
        sock.sendall(post(token=True))  # the same connection, body of the refused one gone
        assert _answers(sock, 1) == [200]
        # Pipelined: a refusal waits for the answer before it, whichever is quicker.
        sock.sendall(post(token=True) + post(token=False) + post(token=True))
        assert _answers(sock, 3) == [200, 401, 200]


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _post(body: bytes, *extra: bytes) -> bytes:
    return (
        b"POST /webhooks/link/dlr HTTP/1.1\r\nHost: x\r\n"
        + f"X-Webhook-Token: {TOKEN}\r\n".encode()
        + b"".join(extra)
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_posts_taken_directly_are_stored_and_answered_in_the_order_they_came(
    guarded_server: int, db: Database
) -> None:
    good, bad = json.dumps(SENT).encode(), b'{"messageId": "m1"}'  # no resultCode: 400
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(_post(good) + _post(bad) + _post(good) + _post(good, b"Connection: close\r\n"))
        data = _read_until_closed(sock)  # closed after the last, as it asked
    heads = [part.split(b"\r\n") for part in data.split(b"HTTP/1.1 ")[1:]]
    assert [int(head[0][:3]) for head in heads] == [200, 400, 200, 200]
    ids = [
        int(line.split(b":")[1])
        for head in heads
        for line in head
        if line.lower().startswith(b"x-report-id:")
    ]
    stored_ids = json.loads(data.split(b"\r\n\r\n")[2].split(b"HTTP/1.1")[0])["stored"]
    assert ids[0] < stored_ids < ids[1] < ids[2]  # stored in the order they came
    assert b"connection: close" in data.split(b"HTTP/1.1 ")[-1]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 4


def test_a_request_for_uvicorn_behind_direct_answers_closes_the_connection_after_them(
    guarded_server: int, db: Database
) -> None:
    body = json.dumps(SENT).encode()
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        # Pipelined behind a post answered directly: its sender tries again, and so
        # does the sender of what follows it (never answered, never stored).
        health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(_post(body) + health + _post(body))
        data = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in data
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 1
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + _post(body))
        assert _answers(sock, 2) == [200, 200]  # uvicorn's first: it queues what follows
