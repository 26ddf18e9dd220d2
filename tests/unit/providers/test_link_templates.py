"""LINK's List Templates read page by page, in Meta's template format (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from dispatcher.errors import LinkAuthError, LinkRequestError
from dispatcher.providers.link import LinkClient, LinkCredentials

PATH = "/platformId/P/platformPartnerId/1/source/%2B4790000000/templates"
OTP = "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code={{1}}"
PAGE_ONE = {
    "data": [
        {
            "name": "offer", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
            "id": "101",
            "components": [
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Hi {{1}}, {{2}} off until {{3}}. {{1}}!"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Shop", "url": "https://shop.example/{{1}}"},
                    {"type": "URL", "text": "Home", "url": "https://shop.example/"},
                ]},
            ],
        },
    ],
    "paging": {"cursors": {"before": "A", "after": "B"}, "next": "https://graph.example/next"},
}  # fmt: skip
PAGE_TWO = {
    "data": [
        {
            "name": "login", "language": "en", "status": "PAUSED", "category": "AUTHENTICATION",
            "id": "102",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Code for {{name}}"},
                {"type": "BODY", "text": "{{code}} is your code."},
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Copy", "url": OTP}]},
            ],
        },
    ],
    "paging": {"cursors": {"before": "B"}},
}  # fmt: skip


def client(handler: httpx.MockTransport) -> LinkClient:
    credentials = LinkCredentials("https://link.example", "u", "pw", "P", "1")
    return LinkClient(credentials, transport=handler)


def test_every_page_is_read_and_each_template_says_what_a_send_must_fill() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("after", ""))
        assert request.url.raw_path.decode().split("?")[0] == PATH
        return httpx.Response(200, json=PAGE_TWO if request.url.params.get("after") else PAGE_ONE)

    with client(httpx.MockTransport(answer)) as link:
        offer, login = link.templates("+4790000000")
        assert link.templates("+4790000000")[0] is offer  # kept: asked once
    assert asked == ["", "B"]
    assert (offer.header_parameters, offer.body_parameters) == (1, 3)
    assert (offer.button_parameters_required, offer.button_parameters_allowed) == (1, 2)
    assert offer.approved and not offer.authentication
    assert (login.header_parameters, login.body_parameters) == (1, 1)
    assert (login.button_parameters_required, login.status) == (1, "PAUSED")
    assert login.authentication and not login.approved


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b"<html>", LinkRequestError),
        (200, json.dumps({"templates": []}).encode(), LinkRequestError),
        (401, json.dumps({"resultCode": 112400, "description": "Unauthorized"}).encode(),
         LinkAuthError),
    ],
    ids=["not-json", "not-a-list", "refused-credentials"],
)  # fmt: skip
def test_an_answer_that_is_no_template_list_is_an_error_of_the_link_tree(
    status: int, body: bytes, error: type[Exception]
) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, content=body))
    with client(transport) as link, pytest.raises(error):
        link.templates("+4790000000")
