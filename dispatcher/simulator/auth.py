"""Basic authentication as the seed's 'Authentication' section describes it."""

from __future__ import annotations

import base64
import binascii
import hmac

from dispatcher.simulator.codes import NO_ACCESS, UNAUTHORIZED


class BasicAuth:
    """Checks ``Authorization: Basic base64(username:password)``.

    A missing or malformed header is 112400 (401), wrong credentials 112401 (403), matching the
    seed's ErrorResponse codes and the 'Upload Media' authorization errors.
    """

    def __init__(self, username: str, password: str) -> None:
        self._credentials = f"{username}:{password}".encode()

    def check(self, header: str | None) -> int | None:
        """None when authorized, else the result code to refuse the request with."""
        if not header:
            return UNAUTHORIZED
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return UNAUTHORIZED
        try:
            credentials = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return UNAUTHORIZED
        if b":" not in credentials:
            return UNAUTHORIZED
        return None if hmac.compare_digest(credentials, self._credentials) else NO_ACCESS
