"""Global per-sender rate limiter in Redis, shared by every worker process and host.

Celery's ``rate_limit`` is per worker process, so N workers would send N times the
sender's level. Here one Lua script (``throttle.lua``, documented there) keeps a
sliding log of grants per sender: no 1-second window ever holds more than the level,
and callers sleep until their reserved slot instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

import redis
from redis.exceptions import RedisError

from dispatcher.errors import StorageError

WINDOW_SECONDS = 1.0
# Requests reach LINK a little after their slot (network, scheduling). Spacing grants
# over a slightly longer window keeps every real 1-second window at LINK within the
# level as long as that jitter stays under the margin; it costs ~5 % of the level.
JITTER_MARGIN_SECONDS = 0.05
_SCRIPT = files("dispatcher").joinpath("throttle.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Grant:
    """A reserved slot: when it starts (Redis clock) and how long the caller waited."""

    at_seconds: float
    waited_seconds: float


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
    ) -> None:
        self._redis = client
        self._script = client.register_script(_SCRIPT)
        self._prefix = prefix
        self._window_us = int((window_seconds + margin_seconds) * 1_000_000)
        self._max_wait_us = int(max_reservation_seconds * 1_000_000)
        self._sleep = sleep

    def acquire(self, sender: str, weight: int, rate_per_second: int) -> Grant:
        """Reserve ``weight`` messages for ``sender`` and sleep until the slot starts."""
        if weight < 1:
            raise ValueError("weight must be at least 1")
        if weight > rate_per_second:
            raise ValueError(
                f"a request of {weight} messages exceeds the level of {rate_per_second}/s "
                "on its own; use smaller batches"
            )
        # The hash tag keeps both keys of a sender on one Redis Cluster slot.
        keys = [f"{self._prefix}:{{{sender}}}:log", f"{self._prefix}:{{{sender}}}:meta"]
        waited = 0.0
        while True:
            try:
                granted, wait_us, at_us = self._script(
                    keys=keys,
                    args=[rate_per_second, weight, self._window_us, self._max_wait_us],
                )
            except RedisError as exc:
                raise StorageError(f"rate limiter unavailable: {exc}") from exc
            wait = int(wait_us) / 1_000_000
            if granted:
                if wait > 0:
                    self._sleep(wait)
                return Grant(at_seconds=int(at_us) / 1_000_000, waited_seconds=waited + wait)
            # The queue is longer than we may reserve ahead: come back when it is not.
            pause = wait - self._max_wait_us / 1_000_000 / 2
            self._sleep(pause)
            waited += pause

    def reset(self, sender: str) -> None:
        self._redis.delete(f"{self._prefix}:{{{sender}}}:log", f"{self._prefix}:{{{sender}}}:meta")
