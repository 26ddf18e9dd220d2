"""Message Status Notification codes (seed 004 'Possible resultCodes in Message Status
Notifications'): each listed code keeps its meaning; any other is a failure."""

from __future__ import annotations

import pytest

from dispatcher.providers.link.callbacks import parse_dlr
from dispatcher.providers.link.codes import dlr_status
from dispatcher.resending.policy import RetryClass, retry_class
from dispatcher.status import MessageStatus


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (112002, MessageStatus.SENT),
        (112003, MessageStatus.DELIVERED),
        (112007, MessageStatus.READ),
        (112403, MessageStatus.FAILED),
        (12409, MessageStatus.UNKNOWN),
        (112409, MessageStatus.UNKNOWN),  # the table's 12409, numbered as its neighbours
        (112001, MessageStatus.SUBMITTED),  # "Queued", as the answer said
        (112506, MessageStatus.FAILED),  # a request code in a report
        (112999, MessageStatus.FAILED),  # listed nowhere
        (0, MessageStatus.FAILED),
    ],
)
def test_each_code_has_a_status_and_an_unlisted_one_is_a_failure(
    code: int, status: MessageStatus
) -> None:
    assert dlr_status(code) is status
    assert (
        parse_dlr(f'{{"messageId": "m1", "resultCode": {code}}}'.encode()).message_status is status
    )


@pytest.mark.parametrize("code", [112000, 112408, 112999])
def test_link_failure_codes_are_final_unless_a_retryable_whatsapp_code_comes_with_them(
    code: int,
) -> None:
    assert retry_class(None, code) is RetryClass.FINAL
    assert retry_class(131000, code) is RetryClass.TRANSIENT
