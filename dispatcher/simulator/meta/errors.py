"""Graph API error bodies, as the Cloud API answers a request it refuses.

Shape (Meta's Graph API reference; seed 002 shows the same fields inside a failed
status's ``errors[]``)::

    {"error": {"message": "(#131056) ...", "type": "OAuthException", "code": 131056,
               "error_data": {"messaging_product": "whatsapp", "details": "..."},
               "error_subcode": 2494010, "fbtrace_id": "A..."}}
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from starlette.responses import Response


@dataclass(frozen=True, slots=True)
class GraphError:
    """One refusal: WhatsApp/Graph code, HTTP status, title and Meta's explanation."""

    code: int
    http_status: int
    title: str
    details: str
    subcode: int | None = None

    def response(self, details: str | None = None) -> Response:
        """The error body; ``details`` replaces the generic explanation when given."""
        error: dict[str, object] = {
            "message": f"(#{self.code}) {self.title}",
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": details or self.details},
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return Response(
            json.dumps({"error": error}).encode(),
            status_code=self.http_status,
            media_type="application/json",
        )


# Meta's reference, "Authorization errors": an invalid or missing token is 190 (HTTP 401).
INVALID_TOKEN = GraphError(
    190, 401, "Invalid OAuth access token - Cannot parse access token", "Invalid access token."
)
# "Unsupported post/get request": an id the token cannot see (Graph's subcode 33).
UNKNOWN_OBJECT = GraphError(
    100,
    400,
    "Unsupported request - method type",
    "Object with this ID does not exist, cannot be loaded due to missing permissions, "
    "or does not support this operation.",
    subcode=33,
)
INVALID_PARAMETER = GraphError(100, 400, "Invalid parameter", "Invalid parameter.")
# Meta's reference, "Throttling errors" and "Integrity / per-user limits".
THROUGHPUT_REACHED = GraphError(
    130429, 400, "Rate limit hit", "Cloud API message throughput has been reached."
)
PAIR_RATE_LIMIT = GraphError(
    131056,
    400,
    "(Business Account, Consumer Account) pair rate limit hit",
    "Message failed to send because there were too many messages sent from this phone "
    "number to the same phone number in a short period of time.",
)
# Seed 000: BSUIDs cannot receive some messages (authentication templates).
BSUID_NOT_ALLOWED = GraphError(
    131062,
    400,
    "Business-scoped User ID (BSUID) recipients are not supported for this message.",
    "Send this message to the user's phone number instead.",
)
SERVER_ERROR = GraphError(
    131000, 500, "Something went wrong", "Message failed to send because of an unknown error."
)
# Meta's reference, "Template errors": answered on the send, not in a status.
TEMPLATE_ERRORS: dict[int, GraphError] = {
    132000: GraphError(
        132000,
        400,
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    132001: GraphError(
        132001,
        404,
        "Template name does not exist in the translation",
        "The template does not exist in this language or is not approved.",
    ),
    132015: GraphError(132015, 400, "Template is paused", "Template is paused due to low quality."),
    132016: GraphError(132016, 400, "Template is disabled", "Template is disabled."),
}
MEDIA_ERROR = GraphError(131053, 400, "Media upload error", "Unable to upload the media.")
