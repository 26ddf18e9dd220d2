"""Request bodies are bounded before anything parses them: strangers on the login page
and send keys uploading alike."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from dispatcher.db import Database
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.web.app import LOGIN_BODY_BYTES, UPLOAD_BODY_BYTES, create_internal_app
from tests.integration.conftest import key_headers


@pytest.fixture()
def http(db: Database) -> Iterator[httpx.Client]:
    with (
        ServerThread(create_internal_app(db)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def test_a_login_body_over_its_cap_is_refused_unread(http: httpx.Client) -> None:
    answer = http.post(
        "/console/login",
        content=b"key=" + b"x" * LOGIN_BODY_BYTES,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": f"request body over {LOGIN_BODY_BYTES} bytes"}


def test_a_chunked_body_is_cut_where_it_passes_the_cap(http: httpx.Client) -> None:
    def endless() -> Iterator[bytes]:
        yield b"key="
        for _ in range(64):  # 4 MiB, chunked: no length declared
            yield b"x" * 65536

    answer = http.post(
        "/console/login",
        content=endless(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


def test_an_upload_over_its_cap_is_refused_before_the_files_are_read(
    http: httpx.Client, db: Database
) -> None:
    """Only the head is sent: the answer comes without the body being waited for."""
    bearer = key_headers(db, "send")["Authorization"]
    head = (
        "POST /api/campaigns HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {bearer}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {UPLOAD_BODY_BYTES + 1}\r\n\r\n"
    )
    url = httpx.URL(str(http.base_url))
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer


def test_bodies_within_their_caps_reach_the_app(http: httpx.Client) -> None:
    answer = http.post("/console/login", data={"key": "wcd_x_y"})
    assert answer.status_code == 403  # read, and refused for its missing CSRF token
