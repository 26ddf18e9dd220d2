"""The fan-out's sender: the same answers and the same sent / in-doubt split as
the one-at-a-time client, against real sockets on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Awaitable, Callable

import pytest

from dispatcher.errors import LinkError, LinkInDoubtError, LinkRequestError, LinkTransientError
from dispatcher.providers.link import LinkCredentials
from dispatcher.providers.link.client import ConcurrentSender
from dispatcher.providers.link.models import MessageResponse
from tests.unit.providers.conftest import REQUEST

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(
    status: int,
    body: bytes | list[bytes],
    seen: list[bytes] | None = None,
    *,
    keep_alive: bool = False,
    connections: list[int] | None = None,
) -> Handler:
    """A server that answers ``body`` (a list: the next of its bodies for each
    request), recording what it read and the connections it took: one request a
    connection, or (``keep_alive``) every request until the client hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1]) for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )  # fmt: skip
                payload = await reader.readexactly(length)
                if seen is not None:
                    seen.extend([head, payload])
                answer = body.pop(0) if isinstance(body, list) else body
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (status, len(answer), answer)
                )
                await writer.drain()
                if not keep_alive:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    return handle


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the whole request, then drops the connection: LINK may have queued it."""
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def send_to(handler: Handler | None, *, timeout: float = 5.0) -> MessageResponse | LinkError:
    if handler is None:  # nobody listening
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = None
    else:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    creds = LinkCredentials(f"http://127.0.0.1:{port}/wa", "user", "secret-password", "PID", "42")
    sender = ConcurrentSender(
        creds, timeout_seconds=timeout, connect_seconds=timeout, max_connections=4
    )
    try:
        [result] = await sender.send_all([REQUEST])
        return result
    finally:
        await sender.aclose()
        if server is not None:
            server.close()


def test_posts_the_wire_form_with_basic_auth_and_returns_ids_in_order() -> None:
    seen: list[bytes] = []
    body = json.dumps({"resultCode": 112001, "description": "q", "messageIds": ["a", "b"]})
    result = asyncio.run(send_to(answering(200, body.encode(), seen)))
    assert isinstance(result, MessageResponse) and result.message_ids == ["a", "b"]
    head, payload = seen
    assert head.startswith(b"POST /wa/messages HTTP/1.1")
    assert b"Basic " + base64.b64encode(b"user:secret-password") in head
    assert json.loads(payload) == REQUEST.to_wire()


def test_nobody_listening_sent_nothing() -> None:
    result = asyncio.run(send_to(None))
    assert isinstance(result, LinkTransientError)


def test_a_dropped_connection_after_the_request_left_is_in_doubt() -> None:
    result = asyncio.run(send_to(hang_up))
    assert isinstance(result, LinkInDoubtError) and "c1-b000001" in str(result)


def test_no_answer_in_time_is_in_doubt() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(2)
        finally:
            writer.close()

    result = asyncio.run(send_to(silent, timeout=0.3))
    assert isinstance(result, LinkInDoubtError)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, b"", LinkTransientError),  # not processed
        (429, b"", LinkTransientError),
        (502, b"<html>bad gateway</html>", LinkInDoubtError),  # a proxy gave up
        (200, b"not json", LinkInDoubtError),
        (200, b'{"resultCode": 112001, "messageIds": ["a"]}', LinkInDoubtError),  # 1 of 2
        (400, b'{"resultCode": 112402, "description": "bad request"}', LinkRequestError),
    ],
)
def test_answers_map_as_for_the_one_at_a_time_client(
    status: int, body: bytes, expected: type[LinkError]
) -> None:
    result = asyncio.run(send_to(answering(status, body)))
    assert type(result) is expected, result


def test_one_connection_carries_requests_one_after_another() -> None:
    connections: list[int] = []
    bodies = [b'{"resultCode": 112001, "messageIds": ["%d", "x"]}' % n for n in range(3)]

    async def three_in_a_row() -> list[MessageResponse | LinkError]:
        server = await asyncio.start_server(
            answering(200, bodies, keep_alive=True, connections=connections), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        creds = LinkCredentials(f"http://127.0.0.1:{port}", "user", "pw", "PID", "42")
        sender = ConcurrentSender(creds, timeout_seconds=5, connect_seconds=5, max_connections=4)
        try:
            return [(await sender.send_all([REQUEST]))[0] for _ in range(3)]
        finally:
            await sender.aclose()
            server.close()

    answers = asyncio.run(three_in_a_row())
    assert [a.message_ids[0] for a in answers if isinstance(a, MessageResponse)] == ["0", "1", "2"]
    assert len(connections) == 1


@pytest.mark.parametrize(
    "answer",
    [
        # no length: the answer ends where the connection does
        b'HTTP/1.1 200 OK\r\n\r\n{"resultCode": 112001, "messageIds": ["a", "b"]}',
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'15\r\n{"resultCode": 112001\r\n1b\r\n, "messageIds": ["a", "b"]}\r\n0\r\n\r\n',
    ],
)
def test_an_answer_without_a_length_is_read_whole(answer: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    result = asyncio.run(send_to(handle))
    assert isinstance(result, MessageResponse) and result.message_ids == ["a", "b"]


def test_requests_that_broke_their_connection_leave_it_free_for_the_next() -> None:
    """Every failed request gives its place in the pool back: more failures than
    connections, then an answer."""
    bodies = [b'{"resultCode": 112001, "messageIds": ["a", "b"]}']
    connections: list[int] = []
    answer = answering(200, bodies, keep_alive=True, connections=connections)
    calls = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls <= 6:
            await hang_up(reader, writer)
        else:
            await answer(reader, writer)

    async def six_then_one() -> list[MessageResponse | LinkError]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        creds = LinkCredentials(f"http://127.0.0.1:{port}", "user", "pw", "PID", "42")
        sender = ConcurrentSender(creds, timeout_seconds=2, connect_seconds=1, max_connections=2)
        try:
            return [(await sender.send_all([REQUEST]))[0] for _ in range(7)]
        finally:
            await sender.aclose()
            server.close()

    results = asyncio.run(six_then_one())
    assert all(isinstance(r, LinkInDoubtError) for r in results[:6])
    assert isinstance(results[6], MessageResponse)
