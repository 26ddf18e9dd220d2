"""Graph API error codes of a refused Cloud API call, in one table: what each means for us.

Meta's error-codes reference (seeds 000-003 name only 131062 and the status errors of
seed 002). A Graph error answer means Meta refused the call: nothing was sent, so the
only question is whether the same request may be tried again:

* auth: the token, its permissions, or the account itself; nothing will work until
  someone fixes it (``LinkAuthError``: the campaign stops);
* transient: throttling and Meta's own failures; retrying later is safe
  (``LinkTransientError``; the sender slows down on the throttling codes by
  ``result_code``, and 131056 holds only that person's send);
* everything else: this request is wrong and sending it unchanged cannot help
  (``LinkRequestError``), with WhatsApp's code kept for the report.
"""

from __future__ import annotations

from dispatcher.errors import LinkAuthError, LinkError, LinkRequestError, LinkTransientError

#: Graph error code -> the error class and what it means (Meta's error-codes reference).
SEND_ERRORS: dict[int, tuple[type[LinkError], str]] = {
    # Authorization errors
    0: (LinkAuthError, "AuthException: the access token could not be validated"),
    3: (LinkAuthError, "API method: the app lacks the capability or permission"),
    10: (LinkAuthError, "Permission denied, or permission removed"),
    190: (LinkAuthError, "Access token expired or invalid"),
    # The account or the number cannot send at all (integrity, payment, registration).
    368: (LinkAuthError, "Temporarily blocked for policy violations"),
    131031: (LinkAuthError, "Business account locked"),
    131042: (LinkAuthError, "Business eligibility payment issue"),
    133010: (LinkAuthError, "Phone number not registered on the Cloud API"),
    # Throttling: nothing was sent, slow down and try again.
    4: (LinkTransientError, "Too many API calls"),
    80007: (LinkTransientError, "WhatsApp Business Account rate limit reached"),
    130429: (LinkTransientError, "Cloud API message throughput reached"),
    131056: (
        LinkTransientError,
        "Pair rate limit: too many messages to this person lately",
    ),
    # Meta's own failures: safe to try again later.
    1: (LinkTransientError, "API unknown error"),
    2: (LinkTransientError, "API service temporarily unavailable"),
    131000: (LinkTransientError, "Something went wrong"),
    131016: (LinkTransientError, "Service temporarily unavailable"),
    131057: (LinkTransientError, "Business account in maintenance mode"),
    133004: (LinkTransientError, "Server temporarily unavailable"),
    # This request is wrong.
    100: (LinkRequestError, "Invalid parameter"),
    131008: (LinkRequestError, "Required parameter missing"),
    131009: (LinkRequestError, "Parameter value not valid"),
    131021: (LinkRequestError, "Recipient cannot be the sender"),
    131026: (LinkRequestError, "Message undeliverable"),
    131030: (LinkRequestError, "Recipient not in the allowed list"),
    131047: (LinkRequestError, "More than 24 hours since the person last wrote"),
    131048: (LinkRequestError, "Spam rate limit hit"),
    131051: (LinkRequestError, "Unsupported message type"),
    131052: (LinkRequestError, "Media download error"),
    131053: (LinkRequestError, "Media upload error"),
    # Seed 000: a BSUID cannot receive this message (authentication templates).
    131062: (LinkRequestError, "BSUID recipients are not supported for this message"),
    132000: (LinkRequestError, "Template parameter count mismatch"),
    132001: (LinkRequestError, "Template does not exist in this language"),
    132005: (LinkRequestError, "Template text too long"),
    132007: (LinkRequestError, "Template format character policy violated"),
    132012: (LinkRequestError, "Template parameter format mismatch"),
    132015: (LinkRequestError, "Template is paused"),
    132016: (LinkRequestError, "Template is disabled"),
}

#: Graph's API permission codes (200-299): the token lacks a permission.
_PERMISSION_CODES = range(200, 300)


def error_class_for(code: int | None, http_status: int) -> type[LinkError]:
    """The error class of a Graph error answer; unknown codes fall back on the status."""
    if code is not None:
        known = SEND_ERRORS.get(code)
        if known is not None:
            return known[0]
        if code in _PERMISSION_CODES:
            return LinkAuthError
    if http_status in (401, 403):
        return LinkAuthError
    if http_status >= 500 or http_status in (408, 429):
        return LinkTransientError
    return LinkRequestError


def described(code: int | None) -> str | None:
    """What the table says a code means, when it lists it."""
    known = SEND_ERRORS.get(code) if code is not None else None
    return known[1] if known else None
