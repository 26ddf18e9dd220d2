"""Result codes and error bodies exactly as the seed documents them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.responses import Response

# Seed 'POST /messages' > 'Possible resultCodes in MessageResponse'.
QUEUED = 112001

# Seed 'POST /messages' > 'Possible resultCodes in ErrorResponse'.
UNAUTHORIZED = 112400
NO_ACCESS = 112401
BAD_REQUEST = 112402
SERVER_ERROR = 112500
INVALID_PAYLOAD = 112505
VALIDATION_ERROR = 112506

# Seed 'Upload Media' > 'Error codes'.
MEDIA_FILE_ERROR = 112502
EXTERNAL_CONNECTION_ERROR = 112503

ERROR_DESCRIPTIONS: dict[int, str] = {
    UNAUTHORIZED: "Unauthorized",
    NO_ACCESS: "No access",
    BAD_REQUEST: "Bad request",
    SERVER_ERROR: "Server error",
    INVALID_PAYLOAD: "Invalid Payload",
    VALIDATION_ERROR: "Validation error",
    MEDIA_FILE_ERROR: "File processing error",
    EXTERNAL_CONNECTION_ERROR: "Http connection error towards external entity",
}

# Seed 'HTTP status codes and response body' and 'Upload Media' > 'Error codes'.
HTTP_STATUS: dict[int, int] = {
    UNAUTHORIZED: 401,
    NO_ACCESS: 403,
    BAD_REQUEST: 400,
    SERVER_ERROR: 500,
    INVALID_PAYLOAD: 400,
    VALIDATION_ERROR: 400,
    MEDIA_FILE_ERROR: 400,
    EXTERNAL_CONNECTION_ERROR: 400,
}


def error_response(code: int, detail: str | None = None) -> Response:
    """ErrorResponse of 'POST /messages': resultCode, description, translatedDescription."""
    return _json_error("resultCode", code, detail)


def media_error_response(code: int, detail: str | None = None) -> Response:
    """Error body of 'Upload Media', which names the code ``status`` instead."""
    return _json_error("status", code, detail)


def _json_error(key: str, code: int, detail: str | None) -> Response:
    description = ERROR_DESCRIPTIONS[code]
    if detail:
        description = f"{description}: {detail}"
    body = {key: code, "description": description, "translatedDescription": None}
    return Response(
        json.dumps(body).encode(), status_code=HTTP_STATUS[code], media_type="application/json"
    )


@dataclass(frozen=True, slots=True)
class Status:
    """One message status notification: the DLR resultCode, its text and Meta's details."""

    code: int
    description: str
    meta_error: str | None = None
    #: reported as a failure (no pricing) whatever the code; else by ``FAILURE_CODES``
    scripted_failure: bool = False

    @property
    def failed(self) -> bool:
        return self.scripted_failure or self.code in FAILURE_CODES


# Seed 'Possible resultCodes in Message Status Notifications'.
FAILURE_CODES = frozenset({112000, 112403, 112404, 112406, 112408})
SENT = Status(112006, "sent")
DELIVERED = Status(112003, "delivered")
READ = Status(112007, "read")

# Seed 'Resending': 130429 is Meta's "Rate limit hit" (Cloud API throughput reached).
RATE_LIMIT_HIT = Status(
    112403, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."
)
MEDIA_UPLOAD_ERROR = Status(
    112403,
    "(#131053) Media upload error",
    "Unable to download the media: the media id is unknown.",
)
# Failures drawn for ``failure_rate``: 112403 with Meta's code in the description (seed DLR
# Example#4 and 'Resending'), 112404 Invalid contact, 112406 Meta error description.
RANDOM_FAILURES: tuple[Status, ...] = (
    Status(
        112403,
        "(#131026) Message undeliverable",
        "Unable to deliver message. The recipient may not be a WhatsApp user "
        "or may not have accepted the latest terms of service.",
    ),
    Status(
        112403,
        "(#131049) Meta chose not to deliver.",
        "This message was not delivered to maintain healthy ecosystem engagement.",
    ),
    Status(112404, "Invalid contact."),
    Status(
        112406,
        "(#131000) Something went wrong",
        "Message failed to send because of an unknown error.",
    ),
)
