"""A minimal keep-alive HTTP/1.1 client that POSTs callbacks.

Why not httpx: measured on this project's machine, one httpx POST costs 0.9-1.6 ms of CPU (httpcore
pool bookkeeping, model objects, and a failing ``import sniffio`` on every request) against about
0.1 ms here. Each message produces up to three callbacks, so with httpx the simulator could only
sustain a few hundred messages per second on one core. This client does exactly what the callbacks
need: POST a JSON body, read the status and the body (Content-Length, chunked or close-delimited),
reuse the connection, speak TLS for https gates and send basic auth given in the URL.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_MAX_HEAD = 64 * 1024


class WebhookError(Exception):
    """The callback could not be delivered (connection, timeout or malformed response)."""


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    tls: bool
    request_head: bytes  # request line and headers up to Content-Length's value


def _parse_target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("gate URL must be http:// or https:// with a host")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    host_header = parts.netloc.rpartition("@")[2]
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host_header}",
        "User-Agent: link-whatsapp-simulator",
        "Content-Type: application/json",
    ]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        head.append(f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}")
    head.append("Content-Length: ")
    return _Target(parts.hostname, port, tls, "\r\n".join(head).encode("latin-1"))


class WebhookClient:
    """One connection at a time, reused between posts; owned by a single callback worker."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._targets: dict[str, _Target] = {}
        self._origin: tuple[str, int, bool] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes) -> int:
        """POST ``body`` as JSON and return the HTTP status, or raise WebhookError."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _parse_target(url)
        origin = (target.host, target.port, target.tls)
        reused = self._writer is not None and self._origin == origin
        try:
            async with asyncio.timeout(self._timeout):
                if not reused:
                    await self._connect(origin)
                try:
                    return await self._exchange(target, body)
                except (asyncio.IncompleteReadError, ConnectionError) as error:
                    answered = isinstance(error, asyncio.IncompleteReadError) and error.partial
                    if not reused or answered:
                        raise
                # The server closed the idle keep-alive connection before reading this request.
                await self._connect(origin)
                return await self._exchange(target, body)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as error:
            self.close()
            raise WebhookError(type(error).__name__) from error

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._origin = None

    async def _connect(self, origin: tuple[str, int, bool]) -> None:
        self.close()
        host, port, tls = origin
        context = None
        if tls:
            context = self._ssl = self._ssl or ssl.create_default_context()
        self._reader, self._writer = await asyncio.open_connection(
            host, port, ssl=context, limit=_MAX_HEAD
        )
        self._origin = origin

    async def _exchange(self, target: _Target, body: bytes) -> int:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(b"%s%d\r\n\r\n%s" % (target.request_head, len(body), body))
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, _, header_block = head.partition(b"\r\n")
            version, status = status_line.split(b" ", 2)[:2]
            status_code = int(status)
            if status_code >= 200:
                break  # 1xx interim responses are followed by the real one
        headers = {}
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        keep_alive = headers.get(b"connection") != b"close" and version == b"HTTP/1.1"
        if headers.get(b"transfer-encoding", b"").endswith(b"chunked"):
            await _skip_chunked(reader)
        elif b"content-length" in headers:
            await reader.readexactly(int(headers[b"content-length"]))
        elif status_code not in (204, 304):
            await reader.read()  # close-delimited body
            keep_alive = False
        if not keep_alive:
            self.close()
        return status_code


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return
        await reader.readexactly(size + 2)
