"""LINK's callbacks read (seed 004 'Message Status Notifications' and 'Incoming
Messages Sent from Mobile Phones'): one status notification or one incoming message a
body, each into the ``Callback`` the stages apply.

A body that is not what LINK documents raises ``InvalidReport`` with the first reason,
in LINK's field names, for the stored row and the 400 answer.
"""

from __future__ import annotations

from pydantic import ValidationError

from dispatcher.providers.base import MAX_ID_CHARS, MAX_REF_CHARS, Callback, InvalidReport
from dispatcher.providers.link.codes import RESULT_CODE_RANGE
from dispatcher.providers.link.models import DeliveryReport, IncomingMessage


def read_status(body: bytes) -> Callback:
    """A status callback: one object per callback (seed 004, "One callback relates to
    one message"), so one stored body has exactly one state."""
    return Callback((parse_dlr(body),))


def read_incoming(body: bytes) -> Callback:
    return Callback(incoming=(parse_incoming(body),))


def parse_dlr(body: bytes) -> DeliveryReport:
    """The status notification in a callback body, or ``InvalidReport`` saying why not.

    Required (seed 004 'Message Status Notifications'): a ``resultCode`` (an Integer; one
    the table does not list is read too, as a failure: ``codes.dlr_status``), and the
    ``messageId`` it is about, or the ``refId`` of a failed request ("request" / index
    -1, where no message was sent).
    """
    try:
        dlr = DeliveryReport.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidReport(_first_error(exc)) from None
    if dlr.result_code not in RESULT_CODE_RANGE:
        raise InvalidReport(f"resultCode: {dlr.result_code} is not a 32-bit integer")
    if dlr.is_request_failure:
        if not dlr.ref_id:
            raise InvalidReport("refId: a failed request's report must name its request")
    elif not dlr.message_id:
        raise InvalidReport("messageId: required in a message's status notification")
    for name, value, most in (("messageId", dlr.message_id, MAX_ID_CHARS),
                              ("refId", dlr.ref_id, MAX_REF_CHARS)):  # fmt: skip
        if value is not None and len(value) > most:
            raise InvalidReport(f"{name}: longer than {most} characters")
        if value is not None and not value.isprintable():
            raise InvalidReport(f"{name}: holds control characters")
    return dlr


def parse_incoming(body: bytes) -> IncomingMessage:
    try:
        return IncomingMessage.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidReport(f"not an incoming message: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(body)"
    return f"{where}: {first['msg']}"
