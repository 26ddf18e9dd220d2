"""The simulated gateway: accepts messages, decides their fate and keeps the books."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from dispatcher.simulator.auth import BasicAuth
from dispatcher.simulator.callbacks import CallbackDispatcher
from dispatcher.simulator.codes import (
    DELIVERED,
    MEDIA_UPLOAD_ERROR,
    RANDOM_FAILURES,
    RATE_LIMIT_HIT,
    READ,
    SENT,
    Status,
)
from dispatcher.simulator.config import LEVEL_RATES, SimulatorConfig
from dispatcher.simulator.dlr import Delivery
from dispatcher.simulator.identity import ContactBook, Kind, Person
from dispatcher.simulator.ids import IdFactory
from dispatcher.simulator.state import Accounting, MediaRecord
from dispatcher.simulator.templates import OUTSIDE_CARE_WINDOW, TemplateBook
from dispatcher.simulator.validation import ParsedMessage, ParsedRequest

# The books only grow during a run (a few objects per message). Every so many requests
# they are moved out of the garbage collector's sight (``gc.freeze``): otherwise its
# full passes walk them all, and at a thousand requests a second those passes stop the
# server for 100-200 ms, then stamp the requests that queued meanwhile as one burst.
_FREEZE_EVERY = 2000

_READ_SEQUENCE = (SENT, DELIVERED, READ)
_UNREAD_SEQUENCE = (SENT, DELIVERED)
_SILENT: tuple[Status, ...] = ()  # accepted, then never reported


def _msisdn_key(source: str) -> str:
    return source if source.startswith("+") else "+" + source


Fault = Literal["hang", "drop"]


@dataclass(frozen=True, slots=True)
class SenderStanding:
    """A number's health (AVAILABLE, LIMITED, BLOCKED) and quality rating (GREEN,
    YELLOW, RED, NA), as the phone number information reports them."""

    health: str
    quality: str

    def with_(self, health: str | None, quality: str | None) -> SenderStanding:
        return SenderStanding(health or self.health, quality or self.quality)


#: How often the loop watch (``Simulator.stalls``) looks at the clock, and the lateness
#: past which a look counts as a stall of the simulator's own loop.
STALL_TICK_SECONDS = 0.002
STALL_MIN_SECONDS = 0.005
#: Stalls kept (a benchmark's run has a few dozen).
STALLS_KEPT = 10_000


class Simulator:
    """State and behaviour behind the HTTP app, reachable as ``app.state.simulator``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.instance = uuid.uuid4().hex  # a restarted simulator has forgotten its media
        self.auth = BasicAuth(config.username, config.password)
        self.callbacks = CallbackDispatcher(config, record=config.record_requests)
        self.rng = random.Random(config.seed)
        self.ids = IdFactory(self.rng)
        self._contacts = ContactBook()
        self.books = Accounting()
        self._levels = {_msisdn_key(source): level for source, level in config.levels.items()}
        self.recorded: list[bytes] = []  # accepted request bodies, if config.record_requests
        self.receipts: list[tuple[float, int]] = []  # (time, messages) of each, likewise
        # (time it ended, seconds) of each stall of this loop, likewise: a request that
        # arrived during one is stamped as it ends, so its receipt time is late.
        self.stalls: list[tuple[float, float]] = []
        self._watch: asyncio.Task[None] | None = None
        self._attempts: Counter[str] = Counter()  # sends per destination, for scripted fates
        self.templates = TemplateBook(config.templates)
        # The sender's health and quality as both APIs report them: the config's, until
        # ``set_sender`` changes them for every number or for one (by display number).
        self._standing = SenderStanding(config.health_status, config.quality_rating)
        self._standings: dict[str, SenderStanding] = {}
        windows = config.open_care_windows
        self._open_windows = None if windows is None else frozenset(windows)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.callbacks.start()
        if self.config.record_requests and self._watch is None:
            self._watch = asyncio.create_task(self._watch_loop(), name="simulator-stalls")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.callbacks.stop()

    async def _watch_loop(self) -> None:
        """Note each time this loop ran late by more than ``STALL_MIN_SECONDS``: a
        benchmark reading the receipt log can tell a burst of requests from a burst of
        stamps (requests that waited, unread, while this process had no CPU or a long
        callback ran)."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(STALL_TICK_SECONDS)
            late = loop.time() - asked - STALL_TICK_SECONDS
            if late > STALL_MIN_SECONDS and len(self.stalls) < STALLS_KEPT:
                self.stalls.append((time.time(), late))

    def reset(self) -> None:
        """Forget every request, upload, contact and pending callback (for tests).

        The RNG restarts from ``seed`` so a reset run replays the same fates; message ids stay
        unique because their counter keeps running.
        """
        self.rng.seed(self.config.seed)
        self.books = Accounting()
        self.instance = uuid.uuid4().hex  # uploads forgotten: cached media ids die
        self.recorded = []
        self.receipts = []
        self.stalls = []
        self._attempts = Counter()
        self._contacts.clear()
        self.callbacks.reset()
        self.templates = TemplateBook(self.config.templates)
        self._standing = SenderStanding(self.config.health_status, self.config.quality_rating)
        self._standings = {}

    async def drain(self, timeout_seconds: float) -> bool:
        """Wait until no callback is pending; False if ``timeout_seconds`` ran out first."""
        return await self.callbacks.drain(timeout_seconds)

    def stats(self) -> dict[str, Any]:
        """Everything ``GET /_simulator/stats`` reports."""
        snapshot = self.books.snapshot()
        snapshot["callbacks"] = self.callbacks.counters.as_dict()
        return snapshot

    # -- policy ----------------------------------------------------------------------------

    def allows(self, platform_id: str, platform_partner_id: str) -> bool:
        """False when the request names ids other than the configured ones (112401)."""
        config = self.config
        return (config.platform_id is None or platform_id == config.platform_id) and (
            config.platform_partner_id is None or platform_partner_id == config.platform_partner_id
        )

    def level_of(self, source: str) -> str:
        return self._levels.get(_msisdn_key(source), self.config.level)

    def set_template_status(
        self, name: str, language: str | None, status: str
    ) -> list[dict[str, Any]]:
        """A template paused, disabled or approved again (``TemplateBook.set_status``)."""
        return self.templates.set_status(name, language, status)

    def standing_of(self, source: str | None) -> SenderStanding:
        """The number's health and quality rating, as its phone number information says
        (``None``: what every number not changed alone reports)."""
        if source is None:
            return self._standing
        return self._standings.get(_msisdn_key(source), self._standing)

    def set_sender(
        self, number: str | None, health: str | None, quality: str | None
    ) -> dict[str, tuple[SenderStanding, SenderStanding]]:
        """Change the health and/or quality rating of one number (E.164), or of every
        number; returns each number told of so far whose standing changed, with its old
        and new standing (``None`` number: the key ``"*"`` stands for the rest)."""
        changed: dict[str, tuple[SenderStanding, SenderStanding]] = {}
        if number is not None:
            key = _msisdn_key(number)
            old = self.standing_of(key)
            new = old.with_(health, quality)
            self._standings[key] = new
            if new != old:
                changed[key] = (old, new)
            return changed
        for key, old in list(self._standings.items()):
            new = self._standings[key] = old.with_(health, quality)
            if new != old:
                changed[key] = (old, new)
        old = self._standing
        self._standing = old.with_(health, quality)
        if self._standing != old:
            changed["*"] = (old, self._standing)
        return changed

    def reject(self, code: int) -> None:
        self.books.rejected_requests[code] += 1

    def draw_server_error(self) -> bool:
        """Whether this request is the one in ``error_rate`` answered 112500."""
        return self.config.error_rate > 0 and self.rng.random() < self.config.error_rate

    def draw_fault(self) -> Fault | None:
        """What goes wrong with an accepted request's answer, if anything."""
        config = self.config
        if not (config.hang_rate or config.drop_rate):
            return None
        draw = self.rng.random()
        if draw < config.drop_rate:
            self.books.faults["drop"] += 1
            return "drop"
        if draw < config.drop_rate + config.hang_rate:
            self.books.faults["hang"] += 1
            return "hang"
        return None

    # -- messages --------------------------------------------------------------------------

    def count_request(self) -> None:
        """Count an accepted request, moving the books out of the collector's sight now
        and then (see ``_FREEZE_EVERY``)."""
        self.books.requests += 1
        if self.books.requests % _FREEZE_EVERY == 0:
            gc.freeze()

    def person(self, kind: Kind, destination: str) -> Person:
        """The person ``destination`` reaches; when it joins two known people into one,
        their counts in the books are merged too."""
        person, merged_keys = self._contacts.resolve(kind, destination)
        for old_key in merged_keys:
            self.books.merge_user(old_key, person.key)
        return person

    def accept(self, request: ParsedRequest) -> list[str]:
        """Queue a valid request: count it, plan its callbacks and return its message ids."""
        self.count_request()
        books = self.books
        books.ref_ids[request.ref_id] += 1
        source = request.source
        rate = LEVEL_RATES[self.level_of(source)]
        second = int(time.time())
        buckets = books.per_second.setdefault(source, {})
        sent_this_second = buckets.get(second, 0)
        messages = request.messages
        gates = self.config.gates
        urls = [gates[gate] for gate in dict.fromkeys(request.gates) if gate in gates]
        message_ids = []
        for kind, destination in request.destinations:
            person = self.person(kind, destination)
            books.destinations[destination] += len(messages)
            books.users[person.key] += len(messages)
            message_id = self.ids.message_id()
            message_ids.append(message_id)
            for index, message in enumerate(messages):
                sent_this_second += 1
                # LINK queues what exceeds the sender's level; Meta then fails it with 130429.
                over_level = sent_this_second > rate
                if over_level:
                    books.excess_over_level[source] += 1
                if urls:
                    throttled = over_level and self.config.enforce_level
                    statuses = self.fate(message, destination, throttled)
                    if not statuses:
                        continue  # scripted silence: accepted, never reported
                    delivery = Delivery(request, message, index, message_id, person, statuses,
                                        self._pricing_category(message))  # fmt: skip
                    self.callbacks.submit(urls, delivery)
        buckets[second] = sent_this_second
        books.accepted_messages += len(message_ids) * len(messages)
        return message_ids

    def _pricing_category(self, message: ParsedMessage) -> str | None:
        """A template message is priced by its template's category (Meta's pricing
        categories: marketing, utility, authentication)."""
        return self.templates.category(message.template) if message.template else None

    def fate(self, message: ParsedMessage, destination: str, throttled: bool) -> tuple[Status, ...]:
        """The statuses one message will go through, decided at acceptance: the config's
        script for ``destination`` if it has one, else drawn (``throttled`` ends it 130429)."""
        scripted = self._scripted(destination)
        return (
            scripted if scripted is not None else self._drawn_fate(message, destination, throttled)
        )

    def _scripted(self, destination: str) -> tuple[Status, ...] | None:
        """The scripted outcome of this send to ``destination``, if the config has one."""
        script = self.config.scripted.get(destination)
        results = self.config.scripted_results.get(destination)
        if not script and not results:
            return None
        attempt = self._attempts[destination]
        self._attempts[destination] += 1
        if results and attempt < len(results) and results[attempt]:
            code = results[attempt]
            return (Status(code, f"scripted result code {code}", scripted_failure=True),)
        if not script:
            return None
        if attempt >= len(script) or script[attempt] == 0:
            return _READ_SEQUENCE
        if script[attempt] < 0:
            return _SILENT
        code = script[attempt]
        return (Status(112403, f"(#{code}) scripted failure", f"scripted WhatsApp error {code}"),)

    def _drawn_fate(
        self, message: ParsedMessage, destination: str, throttled: bool
    ) -> tuple[Status, ...]:
        """The statuses of an unscripted message: the template book, care windows, unknown
        media and throttling first, then ``failure_rate`` and ``read_rate``."""
        if message.template is not None:
            failure = self.templates.failure(message.template)
            if failure is not None:
                return (failure,)
        elif self._open_windows is not None and destination not in self._open_windows:
            return (OUTSIDE_CARE_WINDOW,)
        media = self.books.media
        if any(media_id not in media for media_id in message.media_ids):
            return (MEDIA_UPLOAD_ERROR,)
        if throttled:
            return (RATE_LIMIT_HIT,)
        config = self.config
        rng = self.rng
        if config.failure_rate > 0 and rng.random() < config.failure_rate:
            if config.failure_codes:
                code = rng.choice(config.failure_codes)
                return (Status(112403, f"(#{code}) drawn failure", f"WhatsApp error {code}"),)
            return (rng.choice(RANDOM_FAILURES),)
        if config.read_rate >= 1 or rng.random() < config.read_rate:
            return _READ_SEQUENCE
        return _UNREAD_SEQUENCE

    # -- media -----------------------------------------------------------------------------

    def upload_failure(self) -> int | None:
        """The error code this upload is answered with, while ``upload_failures`` last."""
        if self.books.upload_failures >= self.config.upload_failures:
            return None
        self.books.upload_failures += 1
        return self.config.upload_failure_code

    def record_media(self, source: str, content_type: str, sha256: str, size: int) -> str:
        media_id = self.ids.media_id()
        self.books.media[media_id] = MediaRecord(media_id, sha256, content_type, size, source)
        return media_id
