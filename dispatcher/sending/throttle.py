"""Global per-sender rate limiter in Redis, shared by every worker process and host.

Celery's ``rate_limit`` is per worker process, so N workers would send N times the
sender's level. Here one Lua script (``throttle.lua``, documented there) keeps a
sliding log of grants per sender: no 1-second window ever holds more than the level,
grants come evenly paced, and callers sleep until their reserved slot instead of
failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files

import redis
from redis.exceptions import RedisError

from dispatcher.errors import StorageError

WINDOW_SECONDS = 1.0
# Requests reach LINK a little after their slot (network, scheduling). Spacing grants
# over a slightly longer window keeps every real 1-second window at LINK within the
# level as long as that jitter stays under the margin; it costs margin / (1 + margin)
# of the level (12 ms: 1.2 %). ``LIMITER_MARGIN_MS`` raises it for a distant LINK.
JITTER_MARGIN_SECONDS = 0.012
_SCRIPT = files("dispatcher.sending").joinpath("throttle.lua").read_text(encoding="utf-8")
_PENALISE = (
    files("dispatcher.sending").joinpath("throttle_penalise.lua").read_text(encoding="utf-8")
)
# Adaptive rate (``penalise``, ``throttle_penalise.lua``): a rate-limit signal takes
# off the refused messages' share of a second at the level plus STEP (so at least
# STEP, at most MOST), signals within HOLD adding up to one cut; never below FLOOR of
# the level; grows back by 1 % of the level per second (a 5 % cut is whole again after
# 5 s).
STEP = 0.05
MOST = 0.5
FLOOR = 0.1
HOLD_SECONDS = 5.0
RECOVERY_PER_SECOND = 0.01


@dataclass(frozen=True, slots=True)
class Grant:
    """A reserved slot: when it starts (Redis clock) and how long the caller waited;
    ``starts`` is the same moment on this process's monotonic clock. ``spacing`` is one
    message's share of the window at the rate in force: a grant of several requests may
    spread them, request ``i`` leaving after the weight before it times ``spacing``."""

    at_seconds: float
    waited_seconds: float
    starts: float = 0.0
    spacing: float = 0.0


class Throttle:
    """``acquire(sender, weight, rate_per_second)`` blocks until the send may go."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "dispatcher:throttle",
        window_seconds: float = WINDOW_SECONDS,
        margin_seconds: float = JITTER_MARGIN_SECONDS,
        max_reservation_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        recovery_per_second: float = RECOVERY_PER_SECOND,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self._redis = client
        self._script = client.register_script(_SCRIPT)
        self._penalise = client.register_script(_PENALISE)
        self._prefix = prefix
        self._window_us = int((window_seconds + margin_seconds) * 1_000_000)
        self._max_wait_us = int(max_reservation_seconds * 1_000_000)
        self._sleep = sleep
        self._recovery = recovery_per_second
        self._hold_us = int(hold_seconds * 1_000_000)

    def acquire(self, sender: str, weight: int, rate_per_second: int) -> Grant:
        """Reserve ``weight`` messages for ``sender`` and sleep until the slot starts."""
        grant = self.reserve(sender, weight, rate_per_second)
        self.wait(grant)
        return grant

    def wait(self, grant: Grant, early: float = 0.0) -> float:
        """Sleep until the slot starts (or ``early`` seconds before it, to do last work
        in time); returns how late we are past it (seconds)."""
        ahead = grant.starts - early - time.monotonic()
        if ahead > 0:
            self._sleep(ahead)
        return max(0.0, time.monotonic() - grant.starts)

    @property
    def margin_seconds(self) -> float:
        return self._window_us / 1_000_000 - WINDOW_SECONDS

    def reserve(
        self,
        sender: str,
        weight: int,
        rate_per_second: int,
        pieces: Sequence[int] = (),
    ) -> Grant:
        """Reserve ``weight`` messages for ``sender`` without waiting for the slot (only
        while the queue is longer than a reservation may reach ahead): work can be
        done before it starts (``wait``). ``pieces``: the weights of the requests the
        grant covers, in the order they leave spread out (``Grant.spacing``); each
        counts at its own moment. Empty: one request of ``weight``."""
        if weight < 1:
            raise ValueError("weight must be at least 1")
        if pieces and (sum(pieces) != weight or min(pieces) < 1):
            raise ValueError("pieces must be positive and add up to the weight")
        if weight > rate_per_second:
            raise ValueError(
                f"a request of {weight} messages exceeds the level of {rate_per_second}/s "
                "on its own; use smaller batches"
            )
        keys = self._keys(sender)
        waited = 0.0
        while True:
            asked = time.monotonic()
            try:
                granted, wait_us, at_us, spacing_us = self._script(
                    keys=keys,
                    args=[
                        rate_per_second,
                        weight,
                        self._window_us,
                        self._max_wait_us,
                        self._recovery,
                        ",".join(map(str, pieces)),
                    ],
                )
            except RedisError as exc:
                raise StorageError(f"rate limiter unavailable: {exc}") from exc
            wait = int(wait_us) / 1_000_000
            if granted:
                return Grant(
                    at_seconds=int(at_us) / 1_000_000,
                    waited_seconds=waited + wait,
                    starts=asked + wait,
                    spacing=int(spacing_us) / 1_000_000,
                )
            # The queue is longer than we may reserve ahead: come back when it is not.
            pause = wait - self._max_wait_us / 1_000_000 / 2
            self._sleep(pause)
            waited += pause

    def penalise(self, sender: str, refused: int, level: int) -> float:
        """A rate-limit signal for ``sender`` (a gateway's 429; Meta 4, 80007, 130429):
        ``refused`` messages sent at ``level`` messages a second were turned away. Lower
        its rate for a while by their share of a second, and a step more (at most by
        half). Returns the factor of the level it may now use."""
        try:
            factor = self._penalise(
                keys=[self._keys(sender)[2]],
                args=[max(1, refused), max(1, level), STEP, MOST, FLOOR, self._hold_us,
                      self._recovery],
            )  # fmt: skip
        except RedisError as exc:
            raise StorageError(f"rate limiter unavailable: {exc}") from exc
        return float(factor)

    def factor(self, sender: str) -> float:
        """The share of its level ``sender`` may use now (1.0 unless rate-limited)."""
        try:
            raw = self._redis.hmget(self._keys(sender)[2], "factor", "at")
            now_s, now_us = self._redis.time()  # Redis's clock, as the scripts use
        except RedisError as exc:
            raise StorageError(f"rate limiter unavailable: {exc}") from exc
        factor, at = raw
        if factor is None or at is None:
            return 1.0
        elapsed = (now_s * 1_000_000 + now_us - int(at)) / 1_000_000
        return min(1.0, float(factor) + self._recovery * elapsed)

    def backlog_seconds(self, sender: str) -> float:
        """How far ahead ``sender``'s slots are already handed out: the wait a request
        asking now would get (0 when the sender is idle)."""
        try:
            paced = self._redis.hget(self._keys(sender)[1], "next")
            now_s, now_us = self._redis.time()
        except RedisError as exc:
            raise StorageError(f"rate limiter unavailable: {exc}") from exc
        if paced is None:
            return 0.0
        return max(0.0, (int(paced) - (now_s * 1_000_000 + now_us)) / 1_000_000)

    def reset(self, sender: str) -> None:
        self._redis.delete(*self._keys(sender))

    def _keys(self, sender: str) -> list[str]:
        # The hash tag keeps a sender's keys on one Redis Cluster slot.
        base = f"{self._prefix}:{{{sender}}}"
        return [f"{base}:log", f"{base}:meta", f"{base}:adapt"]
