"""Identifiers shaped like LINK's and Meta's, reproducible under a seeded RNG."""

from __future__ import annotations

import random

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_LENGTH = 22  # seed 'MessageResponse': "1aU6cwxAKE9NzMLrS6M82C"
_COUNTER_BITS = 43
_LOW_BITS = 40
_HIGH_BITS = 47  # 47 + 43 + 40 = 130 bits < 62**22, so every value fits in 22 characters


class IdFactory:
    """Message ids and media ids.

    A message id embeds a counter between random bits, so it looks random (like LINK's) but can
    never repeat within a process, even across resets.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._counter = 0
        self._media_ids: set[str] = set()

    def message_id(self) -> str:
        self._counter += 1
        bits = self._rng.getrandbits(_HIGH_BITS + _LOW_BITS)
        value = (
            ((bits >> _LOW_BITS) << (_COUNTER_BITS + _LOW_BITS))
            | (self._counter << _LOW_BITS)
            | (bits & ((1 << _LOW_BITS) - 1))
        )
        chars = []
        for _ in range(_ID_LENGTH):
            value, digit = divmod(value, 62)
            chars.append(_BASE62[digit])
        return "".join(chars)

    def media_id(self) -> str:
        """A numeric id like the seed's "1192798951408501", unique in this process."""
        while True:
            media_id = str(self._rng.randrange(10**15, 10**16))
            if media_id not in self._media_ids:
                self._media_ids.add(media_id)
                return media_id
