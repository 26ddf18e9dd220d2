"""LINK result codes (seed 004) in one table each: what they mean for us.

* request codes (MessageResponse / ErrorResponse / media errors) map to an error class;
* delivery report codes (Message Status Notifications) map to a message status.
"""

from __future__ import annotations

import re

from dispatcher.errors import (
    LinkAuthError,
    LinkError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.status import MessageStatus

QUEUED = 112001

#: ErrorResponse resultCodes of POST /messages and the media error ``status`` codes.
REQUEST_ERRORS: dict[int, tuple[type[LinkError], str]] = {
    112400: (LinkAuthError, "Unauthorized: missing or malformed basic auth"),
    112401: (LinkAuthError, "No access: credentials or system access refused"),
    112402: (LinkRequestError, "Bad request: badly formatted or missing parameters"),
    112408: (LinkRequestError, "System validation error (sender status or media link)"),
    112500: (LinkTransientError, "LINK server error"),
    112501: (LinkRequestError, "Request to external entity failed"),
    112502: (LinkRequestError, "File processing error (media missing, type or size)"),
    112503: (LinkTransientError, "Connection error towards external entity"),
    112505: (LinkRequestError, "Invalid payload: the JSON could not be read"),
    112506: (LinkRequestError, "Validation error: the request failed the schema"),
}

#: Message Status Notification resultCodes -> the status they report.
DLR_STATUS: dict[int, MessageStatus] = {
    112000: MessageStatus.FAILED,  # unknown error
    112002: MessageStatus.SENT,  # sent to WA
    112003: MessageStatus.DELIVERED,
    112006: MessageStatus.SENT,  # sent by WA
    112007: MessageStatus.READ,
    112008: MessageStatus.DELETED,
    112403: MessageStatus.FAILED,  # not delivered, see resultDescription
    112404: MessageStatus.FAILED,  # invalid contact
    112406: MessageStatus.FAILED,  # Meta error description
    112408: MessageStatus.FAILED,  # system error contacting the WhatsApp proxy
    12409: MessageStatus.UNKNOWN,  # Redis error: no further reports for this message
    # The table's "12409 Redis error" sits among 112xxx codes: LINK may send either.
    112409: MessageStatus.UNKNOWN,
    # MessageResponse's "Queued": what the answer already said; a report of it changes
    # nothing (it is not a failure).
    QUEUED: MessageStatus.SUBMITTED,
}

#: The range a stored result code fits (the documented type is Integer: 32 bits).
RESULT_CODE_RANGE = range(-(2**31), 2**31)


def dlr_status(result_code: int) -> MessageStatus:
    """The status a report's resultCode stands for.

    A code the table does not list (LINK may add codes; request-level failures carry
    ErrorResponse codes such as 112506) is a failure: the message keeps the code and
    the description, and a campaign never waits for a report that will not come.
    """
    return DLR_STATUS.get(result_code, MessageStatus.FAILED)


def error_class_for(result_code: int | None, http_status: int) -> type[LinkError]:
    """The error class for an error answer; unknown codes fall back on the HTTP status."""
    if result_code is not None and result_code in REQUEST_ERRORS:
        return REQUEST_ERRORS[result_code][0]
    if http_status in (401, 403):
        return LinkAuthError
    if http_status >= 500 or http_status in (408, 429):
        return LinkTransientError
    return LinkRequestError


_WHATSAPP_CODE = re.compile(r"\(#(\d+)\)")


def whatsapp_error_code(
    result_description: str | None, meta_error_details: str | None = None
) -> int | None:
    """The WhatsApp (Meta) error code of a failure report, e.g. ``(#131049) ...`` -> 131049.

    Seed 004 puts it in ``resultDescription``; ``customParameters.metaErrorDetails`` is
    plain text and only consulted when it carries the same ``(#code)`` form.
    """
    for text in (result_description, meta_error_details):
        if text:
            match = _WHATSAPP_CODE.search(text)
            if match:
                return int(match.group(1))
    return None
