"""What a message's failure means and what to do about it, for people reading a campaign.

A failed message carries LINK's ``resultCode`` (``result_code``) and, when the report or
the refusal names one, WhatsApp's own code (``whatsapp_error_code``: parsed from
``(#131026)`` in LINK's description, or Meta's error ``code``); a message never sent
carries its status (``expired``, ``cancelled``) or a ``skip_reason``. ``explain`` maps
each combination to exactly one entry, the most specific first: the dispatcher's own
outcome, then WhatsApp's code, then LINK's.

Sources, cited per entry: seed 004 (LINK Mobility WhatsApp Message API: Message Status
Notification and ErrorResponse codes, "Resending"), seeds 000 and 002 (Meta: error
table of the BSUID and username APIs, status webhook examples). Codes those are silent
on but the dispatcher already acts on (``providers.meta.codes``, ``guardrails``) are
worded after Meta's public error-codes reference
(developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes): "Meta ref".
Whether the dispatcher sends a message again is not restated here: it is read from
``resending.policy``, the one table that decides it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from dispatcher.resending.policy import BSUID_NOT_ALLOWED, RetryClass, retry_class
from dispatcher.status import MessageStatus, SkipReason

META_REFERENCE = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes"


class Entry(NamedTuple):
    title: str
    meaning: str
    action: str
    source: str  # where the meaning comes from


@dataclass(frozen=True, slots=True)
class Explanation:
    """One failure, as the console shows it. ``retried``: the dispatcher sends such a
    message again by itself (within the campaign's resend limits)."""

    code: str  # "131026", "LINK 112404", "expired", "care_window_closed"
    title: str
    meaning: str
    action: str
    retried: bool
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SEED4 = "LINK API (seed 004)"
_SEED4_RESEND = "LINK API (seed 004), 'Resending'"
_META = "Meta ref"
_CONTACT_LINK = "Contact LINK Mobility support with the message id and time."
_NO_MORE_REPORTS = Entry(
    "No further reports",
    "LINK's internal store failed (Redis error): no more status reports will come for this "
    "message, so whether it arrived is unknown.",
    "Nothing to resend blindly: the person may have it. " + _CONTACT_LINK,
    _SEED4,
)
_TEMPLATE_FIX = "Fix the campaign's template or its parameters, then send the failed people again."

#: LINK resultCodes a message can fail with: Message Status Notifications (seed 004
#: "Possible resultCodes in Message Status Notifications") and the ErrorResponse /
#: request error codes of a refused ``POST /messages`` (every message of the request
#: fails with it).
LINK: dict[int, Entry] = {
    112000: Entry("Unknown error", "LINK reports an unexpected error.", _CONTACT_LINK, _SEED4),
    112403: Entry(
        "Not delivered",
        "WhatsApp did not deliver the message; LINK gave no WhatsApp code, only the result "
        "description.",
        "Read the description; if it names a WhatsApp code, look it up in Meta's reference.",
        _SEED4,
    ),
    112404: Entry(
        "Invalid contact",
        "The recipient is not a valid WhatsApp user.",
        "Check the number; remove it from the list if it has no WhatsApp.",
        _SEED4,
    ),
    112406: Entry(
        "Meta error",
        "Meta's Cloud API refused the message; its description is in the result description.",
        "Read the description for Meta's reason.",
        _SEED4,
    ),
    112408: Entry(
        "System error",
        "An unexpected error contacting the WhatsApp proxy (report), or a system validation "
        "error (request): the sender number's status, a media link's signature or expiry.",
        "Check the sender's status and media links. " + _CONTACT_LINK,
        _SEED4,
    ),
    12409: _NO_MORE_REPORTS,
    # The table's 12409 sits among 112xxx codes: LINK may send either (providers.link.codes).
    112409: _NO_MORE_REPORTS,
    112400: Entry(
        "Unauthorized",
        "LINK refused the request: the basic authorization header was missing or malformed.",
        "Check LINK_USERNAME / LINK_PASSWORD, then resume the campaign.",
        _SEED4,
    ),
    112401: Entry(
        "No access",
        "LINK refused the credentials or the system access configuration.",
        "Check the credentials and platform ids. " + _CONTACT_LINK,
        _SEED4,
    ),
    112402: Entry(
        "Bad request",
        "LINK refused the request: missing or badly formatted parameters.",
        "Check the campaign spec (template, parameters, media); the description names the field.",
        _SEED4,
    ),
    112500: Entry("Server error", "LINK failed unexpectedly.", _CONTACT_LINK, _SEED4),
    112501: Entry(
        "External request failed",
        "A request LINK made to an external entity failed.",
        "Read the description for the cause.",
        _SEED4,
    ),
    112502: Entry(
        "File processing error",
        "The media was missing, of an unsupported type, or could not be processed.",
        "Check the campaign's media file (type and size).",
        _SEED4,
    ),
    112503: Entry(
        "Connection error",
        "A temporary network error towards an external entity; the request may be reissued.",
        "Send the failed people again later.",
        _SEED4,
    ),
    112505: Entry(
        "Invalid payload",
        "LINK could not read the request's JSON.",
        "Report it as a dispatcher bug, with the campaign id.",
        _SEED4,
    ),
    112506: Entry(
        "Validation error",
        "The request failed LINK's schema validation.",
        "Read the description for the field; check the campaign spec.",
        _SEED4,
    ),
}

#: WhatsApp (Meta Graph) error codes, as LINK passes them on in descriptions like
#: ``(#131049) ...`` and Meta's Cloud API returns them.
WHATSAPP: dict[int, Entry] = {
    # seed 004 "Error codes from WhatsApp which are subject for resends"
    1: Entry(
        "API unknown",
        "Invalid request or a possible server error at Meta.",
        "None: it is sent again automatically; if it persists, check Meta's status page.",
        _SEED4_RESEND,
    ),
    2: Entry(
        "API service",
        "Meta's service was down or overloaded for a while.",
        "None: it is sent again automatically.",
        _SEED4_RESEND,
    ),
    4: Entry(
        "Too many API calls",
        "The app reached its API call rate limit.",
        "None: the dispatcher slows down and sends it again.",
        _SEED4_RESEND,
    ),
    80007: Entry(
        "Account rate limit",
        "The WhatsApp Business Account reached its rate limit.",
        "None: the dispatcher slows down and sends it again; lower the campaign's rate if "
        "it recurs.",
        _SEED4_RESEND,
    ),
    130429: Entry(
        "Throughput reached",
        "Cloud API message throughput was reached.",
        "None: the dispatcher slows down and sends it again; check the sender's level "
        "(80 or 1000 msg/s).",
        _SEED4_RESEND,
    ),
    131000: Entry(
        "Something went wrong",
        "The message failed for an unknown reason at Meta.",
        "None: it is sent again automatically.",
        _SEED4_RESEND,
    ),
    131016: Entry(
        "Service unavailable",
        "A WhatsApp service was temporarily unavailable.",
        "None: it is sent again automatically.",
        _SEED4_RESEND,
    ),
    131049: Entry(
        "Meta chose not to deliver",
        "Not delivered to keep ecosystem engagement healthy: the person received many "
        "marketing messages lately.",
        "It is tried again hours later; a large share means the audience is saturated: "
        "send less often.",
        _SEED4_RESEND,
    ),
    131057: Entry(
        "Account in maintenance",
        "The business account is in maintenance mode (possibly a throughput upgrade).",
        "None: it is sent again later.",
        _SEED4_RESEND,
    ),
    133004: Entry(
        "Server unavailable",
        "WhatsApp's server was temporarily unavailable.",
        "None: it is sent again automatically.",
        _SEED4_RESEND,
    ),
    # seed 004 DLR Example#4 "(#100)Invalid parameter"; seed 000 "Param Invalid"
    100: Entry(
        "Invalid parameter",
        "A parameter of the message is invalid (metaErrorDetails says which, e.g. a media "
        "id or link missing).",
        _TEMPLATE_FIX,
        "LINK API (seed 004), DLR Example#4",
    ),
    # seed 000 (BSUIDs and usernames)
    10: Entry(
        "Permission denied",
        "The app lacks permission for this action (the system user's access to the "
        "WhatsApp Business Account).",
        "Grant the token's system user access to the phone numbers, then resume.",
        "Meta (seed 000)",
    ),
    33: Entry(
        "Invalid ID",
        "The business phone number id is invalid, its account was deleted, or the token "
        "lacks whatsapp_business_management.",
        "Check the sender's phone number id and the token's permissions.",
        "Meta (seed 000)",
    ),
    131062: Entry(
        "BSUID not allowed",
        "Business-scoped user id (BSUID) recipients are not supported for this message "
        "(e.g. authentication templates).",
        "It is sent once more to the person's phone number when known; else list a phone "
        "number for them.",
        "Meta (seed 000)",
    ),
    133010: Entry(
        "Number not registered",
        "The business phone number is not registered for Cloud API use.",
        "Register the sender number, then resume.",
        "Meta (seed 000)",
    ),
    # seed 002 (status webhooks)
    131014: Entry(
        "Media request failed",
        "WhatsApp could not fetch the message's media URL (e.g. 404 Not Found).",
        "Check that the media link is public and valid.",
        "Meta (seed 002)",
    ),
    131051: Entry(
        "Unsupported message type",
        "The message type is not supported.",
        "Use a supported message type in the campaign.",
        "Meta (seed 002)",
    ),
    130472: Entry(
        "Part of an experiment",
        "The person's number is part of a Meta experiment: marketing messages are not "
        "delivered to it.",
        "None: it is not an error of the campaign; do not resend.",
        "Meta (seed 002)",
    ),
    # Meta ref: codes the seeds do not list but providers.meta.codes and the guardrails use.
    0: Entry(
        "Authentication failed",
        "The access token could not be validated.",
        "Renew the access token, then resume.",
        _META,
    ),
    3: Entry(
        "Capability missing",
        "The app lacks the capability or permission for this API method.",
        "Check the app's permissions, then resume.",
        _META,
    ),
    190: Entry(
        "Access token expired",
        "The access token expired or was invalidated.",
        "Renew the access token, then resume.",
        _META,
    ),
    368: Entry(
        "Temporarily blocked",
        "The account is temporarily blocked for policy violations.",
        "Check the account's status in WhatsApp Manager; wait for the block to end.",
        _META,
    ),
    131031: Entry(
        "Account locked",
        "The business account is locked (policy violation or failed verification).",
        "Check WhatsApp Manager; appeal if it is wrong.",
        _META,
    ),
    131042: Entry(
        "Payment issue",
        "A problem with the business account's payment method.",
        "Fix the payment method in the business settings, then resume.",
        _META,
    ),
    131056: Entry(
        "Pair rate limit",
        "Too many messages from this sender to this person in a short time.",
        "None: that person's message is sent again later.",
        _META,
    ),
    131008: Entry(
        "Parameter missing",
        "A required parameter is missing.",
        _TEMPLATE_FIX,
        _META,
    ),
    131009: Entry(
        "Parameter not valid",
        "A parameter value is not valid.",
        _TEMPLATE_FIX,
        _META,
    ),
    131021: Entry(
        "Recipient is the sender",
        "The recipient's number is the sender's own.",
        "Remove the sender's number from the list.",
        _META,
    ),
    131026: Entry(
        "Message undeliverable",
        "The number has no WhatsApp, or its owner has not accepted the current terms, or "
        "uses an old WhatsApp version.",
        "Check the number; ask the person to update WhatsApp; do not resend unchanged.",
        _META,
    ),
    131030: Entry(
        "Recipient not allowed",
        "The recipient is not in the allowed list (a test number's account).",
        "Add the number to the allowed list, or send from a production number.",
        _META,
    ),
    131047: Entry(
        "Care window closed",
        "More than 24 hours since the person last wrote: only a template may be sent.",
        "Send a template message instead.",
        _META,
    ),
    131048: Entry(
        "Spam rate limit",
        "The number may send fewer messages: too many earlier ones were blocked or "
        "flagged as spam.",
        "Check the sender's quality in WhatsApp Manager; send to people who opted in.",
        _META,
    ),
    131052: Entry(
        "Media download error",
        "WhatsApp could not download the media.",
        "Check the media file and its link.",
        _META,
    ),
    131053: Entry(
        "Media upload error",
        "The message's media could not be uploaded (type or size).",
        "Check the media file's type and size.",
        _META,
    ),
    132000: Entry(
        "Parameter count mismatch",
        "The template's parameter count does not match its definition.",
        _TEMPLATE_FIX,
        _META,
    ),
    132001: Entry(
        "Template does not exist",
        "The template does not exist in this language, or is not approved.",
        "Check the template's name, language and approval.",
        _META,
    ),
    132005: Entry(
        "Template text too long",
        "The template with its parameters filled in is too long.",
        "Shorten the parameters' values.",
        _META,
    ),
    132007: Entry(
        "Format policy violated",
        "The template's content violates WhatsApp's format policy.",
        "Edit the template or its parameters.",
        _META,
    ),
    132012: Entry(
        "Parameter format mismatch",
        "A template parameter's format does not match the template.",
        _TEMPLATE_FIX,
        _META,
    ),
    132015: Entry(
        "Template paused",
        "The template is paused for low quality.",
        "Edit the template or use another one; the campaign pauses itself.",
        _META,
    ),
    132016: Entry(
        "Template disabled",
        "The template is disabled for low quality.",
        "Use another template; the campaign pauses itself.",
        _META,
    ),
}

_OWN = "dispatcher"
_CANCEL_NOTE = "The campaign was cancelled before this message was sent."

#: The dispatcher's own outcomes: never sent, or no report to go by.
OUTCOMES: dict[str, Entry] = {
    SkipReason.CARE_WINDOW_CLOSED: Entry(
        "Care window closed",
        "Not sent: the 24-hour customer care window had closed when its request was to leave.",
        "Send a template message instead.",
        _OWN,
    ),
    SkipReason.FREQUENCY_CAP: Entry(
        "Frequency cap",
        "Not sent: the person had all the marketing messages the frequency cap allows "
        "from this portfolio in its period.",
        "None, or loosen the cap; they are eligible again once the oldest leaves the period.",
        _OWN,
    ),
    MessageStatus.EXPIRED: Entry(
        "Expired",
        "A resend was due but the first submission's validity ran out first; it was not "
        "sent again.",
        "Send a new campaign to these people if the message still matters.",
        _OWN,
    ),
    MessageStatus.CANCELLED: Entry(
        "Cancelled", _CANCEL_NOTE, "None, or send them in a new campaign.", _OWN
    ),
    "in_doubt": Entry(
        "In doubt",
        "Its request got no answer and no status report came, even after it was sent "
        "again: whether the person got it is unknown.",
        "Check with LINK by the message's batch id (refId) before sending again.",
        _OWN,
    ),
    MessageStatus.UNKNOWN: Entry(
        "Outcome unknown",
        "No further status reports will come for it.",
        "Nothing to resend blindly: the person may have it.",
        _OWN,
    ),
    MessageStatus.FAILED: Entry(
        "Failed without a code",
        "The request was refused without a result code.",
        "Read the result description.",
        _OWN,
    ),
}


def retried(whatsapp_code: int | None, result_code: int | None = None) -> bool:
    """True when ``resending`` sends a message failed with these codes again by itself:
    a retry class other than final, or 131062 (once, to the person's phone number)."""
    if whatsapp_code == BSUID_NOT_ALLOWED:
        return True
    return retry_class(whatsapp_code, result_code) is not RetryClass.FINAL


def explain(
    result_code: int | None,
    whatsapp_code: int | None,
    status: str,
    skip_reason: str | None,
) -> Explanation:
    """The one entry for a message's failure (``status`` may be ``in_doubt``: a failure
    ``insight.failures`` recognises by its description)."""
    if status == MessageStatus.SKIPPED:
        reason = skip_reason or "unknown"
        own = OUTCOMES.get(reason)
        if own is None:
            own = Entry(
                f"Skipped ({reason})",
                "Not sent: a check before sending said no.",
                "Read the result description.",
                _OWN,
            )
        return _own(reason, own)
    if status in (MessageStatus.EXPIRED, MessageStatus.CANCELLED, "in_doubt"):
        return _own(status, OUTCOMES[status])
    if whatsapp_code is not None:
        return _whatsapp(whatsapp_code, result_code)
    if result_code is not None:
        link = LINK.get(result_code)
        if link is not None:
            return Explanation(f"LINK {result_code}", *link[:3], False, link.source)
        if result_code in WHATSAPP:  # Meta's refusals keep Graph's code in both columns
            return _whatsapp(result_code, result_code)
        return Explanation(
            str(result_code),
            f"Code {result_code}",
            "Not documented in LINK's API (seed 004) nor Meta's error codes this dispatcher "
            "knows; see the result description.",
            "Read the result description; ask LINK Mobility support what the code means.",
            False,
            "not documented",
        )
    return _own(status, OUTCOMES.get(status, OUTCOMES[MessageStatus.FAILED]))


def _own(code: str, entry: Entry) -> Explanation:
    return Explanation(code, entry.title, entry.meaning, entry.action, False, entry.source)


def _whatsapp(code: int, result_code: int | None) -> Explanation:
    entry = WHATSAPP.get(code) or Entry(
        f"WhatsApp error {code}",
        "Not documented in LINK's API (seed 004) nor the Meta error codes this dispatcher "
        "knows; see the result description.",
        f"Read the result description; look the code up in Meta's reference ({META_REFERENCE}).",
        "not documented",
    )
    return Explanation(str(code), *entry[:3], retried(code, result_code), entry.source)
