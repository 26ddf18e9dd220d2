"""Meta's webhook signature and verification handshake (Meta's reference, 'Webhooks':
seeds 000-003 show the bodies but not how they are signed).

Every POST carries ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw
body keyed with the app secret: it is checked over the bytes as received, before any
parsing, and compared in constant time. The subscription handshake is a GET with
``hub.mode=subscribe``, ``hub.verify_token`` and ``hub.challenge``; the challenge is
echoed when the token is ours.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum
from urllib.parse import parse_qs

__all__ = ["HEADER", "Signature", "challenge_answer", "judge", "sign", "start", "verify"]

#: The header Meta signs its webhook posts with (lower case, as ASGI gives it).
HEADER = b"x-hub-signature-256"
_PREFIX = b"sha256="


class Signature(Enum):
    """What a post's signature says: missing (401), wrong (403), or good."""

    MISSING = "missing"
    WRONG = "wrong"
    GOOD = "good"


def sign(app_secret: bytes, body: bytes) -> bytes:
    """The header value Meta sends with ``body``."""
    mac = start(app_secret)
    mac.update(body)
    return _PREFIX + mac.hexdigest().encode()


def start(app_secret: bytes) -> hmac.HMAC:
    """A signature to feed the body to as it arrives (``judge`` it at the end): a body
    too big to keep whole is still signed whole."""
    return hmac.new(app_secret, digestmod=hashlib.sha256)


def judge(mac: hmac.HMAC, header: bytes | None) -> Signature:
    """Judge ``header`` (the ``X-Hub-Signature-256`` value, None when absent) against
    the body fed to ``mac``. An empty header counts as missing; anything else that is
    not the body's signature, whatever its form, as wrong."""
    if not header:
        return Signature.MISSING
    # Hex digits are compared case-insensitively: the digest is the same either way.
    offered = header.strip().lower()
    expected = _PREFIX + mac.hexdigest().encode()
    return Signature.GOOD if hmac.compare_digest(offered, expected) else Signature.WRONG


def verify(app_secret: bytes, body: bytes, header: bytes | None) -> Signature:
    """``judge`` for a body at hand."""
    mac = start(app_secret)
    mac.update(body)
    return judge(mac, header)


def challenge_answer(query_string: bytes, verify_token: bytes) -> bytes | None:
    """The ``hub.challenge`` to echo for a subscription handshake with our verify
    token; None for anything else (a wrong token, another mode, no challenge)."""
    query = parse_qs(query_string.decode("latin-1"))
    mode = query.get("hub.mode", [""])[0]
    offered = query.get("hub.verify_token", [""])[0].encode("latin-1")
    challenge = query.get("hub.challenge", [""])[0]
    if mode != "subscribe" or not challenge:
        return None
    if not hmac.compare_digest(offered, verify_token):
        return None
    return challenge.encode("latin-1")
