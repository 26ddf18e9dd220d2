"""Background delivery of DLR callbacks to the event report gates' URLs.

A queue feeds ``callback_concurrency`` worker tasks, so ``POST /messages`` never waits for a
receiver. At HIGH level the simulator posts ~3000 callbacks/s on the machine it measures, so
each worker task posts over its own keep-alive HTTP/1.1 connection with the request's bytes
built once per URL (``_Poster``): a fraction of an aiohttp POST's CPU (~0.27 ms each, measured
here; an httpx one ~1.1 ms). HTTPS receivers go through aiohttp.
Meta's status webhooks ride the same queue with a signature header per body (``sign``).
The statuses of one message go to each gate as a chain: the next is only scheduled
(``dlr_delay_ms`` later) once the previous one is settled, so a receiver sees them in order even
while it is being retried with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiohttp

from dispatcher.simulator.codes import Status
from dispatcher.simulator.config import SimulatorConfig

_TIMEOUT_SECONDS = 5.0
_MAX_BACKOFF_SECONDS = 5.0
_RETRYABLE_4XX = frozenset({408, 429})


class Report(Protocol):
    """A message's planned statuses and how one is written (LINK's DLR, Meta's webhook)."""

    statuses: tuple[Status, ...]

    def render(self, status: Status) -> bytes: ...


#: Extra header lines (each ending in CRLF) for a rendered body, e.g. its signature.
Signer = Callable[[bytes], bytes]


@dataclass(slots=True)
class CallbackCounters:
    scheduled: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    rejected: int = 0

    @property
    def pending(self) -> int:
        return self.scheduled - self.delivered - self.dropped - self.rejected

    def as_dict(self) -> dict[str, int]:
        return {
            "scheduled": self.scheduled,
            "delivered": self.delivered,
            "pending": self.pending,
            "retried": self.retried,
            "dropped": self.dropped,
            "rejected": self.rejected,
        }


@dataclass(slots=True)
class _Job:
    """The next status of one delivery to one gate URL."""

    url: str
    delivery: Report
    generation: int
    step: int = 0
    attempt: int = 1
    body: bytes | None = None
    sign: Signer | None = None
    headers: bytes = b""
    retry_refusals: bool = False  # Meta: any answer but 200 is retried (seed 002)


class CallbackDispatcher:
    """Owns the queue, the workers and the HTTP client; counts what became of each callback."""

    def __init__(self, config: SimulatorConfig, *, record: bool = False) -> None:
        self._config = config
        self._record = record
        self.taken: list[bytes] = []  # bodies a receiver answered 2xx, when recording
        self._delay = config.dlr_delay_ms / 1000
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._generation = 0
        self.counters = CallbackCounters()

    def start(self) -> None:
        """Start the workers on the running loop (from the lifespan, or lazily on first use)."""
        if self._workers:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()  # bound to this loop; a restarted app starts afresh
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._config.callback_concurrency),
            timeout=aiohttp.ClientTimeout(total=_TIMEOUT_SECONDS),
            headers={"Content-Type": "application/json"},
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"simulator-callbacks-{number}")
            for number in range(self._config.callback_concurrency)
        ]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def submit(
        self,
        urls: list[str],
        delivery: Report,
        *,
        sign: Signer | None = None,
        retry_refusals: bool = False,
    ) -> None:
        """Plan every status of ``delivery`` for every URL; the first follows after the delay.
        ``sign`` gives header lines for each rendered body (Meta's ``X-Hub-Signature-256``);
        ``retry_refusals`` retries 4xx answers too, as Meta does (seed 002: "a HTTP status
        code other than 200")."""
        if not self._workers:
            self.start()
        self.counters.scheduled += len(urls) * len(delivery.statuses)
        generation = self._generation
        for url in urls:
            job = _Job(url, delivery, generation, sign=sign, retry_refusals=retry_refusals)
            self._enqueue_after(self._delay, job)

    def reset(self) -> None:
        """Forget everything queued or in flight; stale jobs are discarded when they surface."""
        self._generation += 1
        self.counters = CallbackCounters()
        self.taken = []
        while not self._queue.empty():
            self._queue.get_nowait()

    async def drain(self, timeout_seconds: float) -> bool:
        """Wait until no callback is pending; polls plain counters, so any loop may call it."""
        deadline = time.monotonic() + timeout_seconds
        while self.counters.pending > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _enqueue_after(self, delay: float, job: _Job) -> None:
        if delay > 0 and self._loop is not None:
            self._loop.call_later(delay, self._queue.put_nowait, job)
        else:
            self._queue.put_nowait(job)

    async def _work(self) -> None:
        queue = self._queue
        session = self._session
        assert session is not None
        poster = _Poster()
        try:
            while True:
                job = await queue.get()
                if job.generation != self._generation:
                    continue
                if job.body is None:
                    job.body = job.delivery.render(job.delivery.statuses[job.step])
                    if job.sign is not None:
                        job.headers = job.sign(job.body)
                if job.url.startswith("http://"):
                    status_code = await poster.post(job.url, job.body, job.headers)
                else:
                    status_code = await _post(session, job.url, job.body, job.headers)
                if job.generation == self._generation:
                    self._settle(job, status_code)
        finally:
            poster.close()

    def _settle(self, job: _Job, status_code: int | None) -> None:
        counters = self.counters
        if status_code is not None and 200 <= status_code < 300:
            counters.delivered += 1
            if self._record and job.body is not None:
                self.taken.append(job.body)
        elif (
            status_code is not None
            and 400 <= status_code < 500
            and status_code not in _RETRYABLE_4XX
            and not job.retry_refusals
        ):
            counters.rejected += 1  # the receiver refuses this callback; retrying cannot help
        elif job.attempt < self._config.callback_max_attempts:
            counters.retried += 1
            backoff = self._config.callback_backoff_ms / 1000 * 2 ** (job.attempt - 1)
            job.attempt += 1
            self._enqueue_after(min(backoff, _MAX_BACKOFF_SECONDS), job)
            return
        else:
            counters.dropped += 1
        job.step += 1
        if job.step < len(job.delivery.statuses):
            job.attempt = 1
            job.body = None
            self._enqueue_after(self._delay, job)


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: bytes = b""
) -> int | None:
    """POST one callback; the HTTP status, or None when no answer came (retry later).

    Credentials in the URL (``https://user:pass@host/...``) become basic auth; ``headers``
    are extra ``Name: value`` CRLF-ended lines.
    """
    extra = dict(_header_pairs(headers)) if headers else None
    try:
        async with session.post(url, data=body, headers=extra) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


def _header_pairs(lines: bytes) -> list[tuple[str, str]]:
    pairs = []
    for line in lines.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
    return pairs


class _Poster:
    """One keep-alive HTTP/1.1 connection per receiver (host and port), for one worker
    task: the request head is built once per URL, the answer read as far as its status
    and declared length. Credentials in the URL become basic auth, as with aiohttp."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[tuple[str, int], bytes]] = {}
        self._open: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def post(self, url: str, body: bytes, headers: bytes = b"") -> int | None:
        """The HTTP status, or None when no answer came (retry later); ``headers`` are
        extra CRLF-ended lines."""
        head = self._heads.get(url)
        if head is None:
            head = self._heads[url] = _head(url)
        address, prefix = head
        for attempt in (1, 2):  # a kept-alive connection the receiver closed: once more
            connection = self._open.get(address)
            fresh = connection is None
            try:
                async with asyncio.timeout(_TIMEOUT_SECONDS):
                    if connection is None:
                        connection = self._open[address] = await asyncio.open_connection(*address)
                    reader, writer = connection
                    writer.write(
                        prefix + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body
                    )
                    return await _answer(reader, lambda: self._forget(address))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                self._forget(address)
                if fresh or attempt == 2:
                    return None
        return None

    def _forget(self, address: tuple[str, int]) -> None:
        connection = self._open.pop(address, None)
        if connection is not None:
            connection[1].close()

    def close(self) -> None:
        for address in list(self._open):
            self._forget(address)


def _head(url: str) -> tuple[tuple[str, int], bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}",
             "Content-Type: application/json"]  # fmt: skip
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append(f"Authorization: Basic {base64.b64encode(secret.encode()).decode()}")
    return (host, port), "".join(line + "\r\n" for line in lines).encode("latin-1")


async def _answer(reader: asyncio.StreamReader, close: Callable[[], None]) -> int:
    """Read one answer; its status. The connection is closed when the receiver says so
    or sends a body this reader does not frame (no Content-Length)."""
    status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
    length: int | None = None
    keep = True
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
        elif name == b"transfer-encoding":
            keep = False  # chunked: not framed here; the connection ends with this answer
    if length:
        await reader.readexactly(length)
    if not keep or (length is None and status not in (204, 304)):
        close()
    return status
