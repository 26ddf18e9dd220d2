from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from dispatcher.errors import (
    LinkAuthError,
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.providers.link.codes import whatsapp_error_code
from tests.unit.providers.conftest import REQUEST

CREDS = LinkCredentials(
    base_url="https://link.test/whatsapp-message",
    username="user",
    password="secret-password",
    platform_id="PID",
    platform_partner_id="42",
)


def client(handler: Callable[[httpx.Request], httpx.Response]) -> LinkClient:
    return LinkClient(CREDS, transport=httpx.MockTransport(handler))


def test_send_posts_every_field_with_basic_auth_and_returns_ids_in_order() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers["authorization"]
        seen["body"] = json.loads(request.content)
        return httpx.Response(
            200, json={"resultCode": 112001, "description": "queued", "messageIds": ["a", "b"]}
        )

    answer = client(handler).send(REQUEST)
    assert answer.message_ids == ["a", "b"]
    assert seen["url"] == "https://link.test/whatsapp-message/messages"
    assert seen["auth"] == httpx.BasicAuth("user", "secret-password")._auth_header
    assert seen["body"] == {
        "platformId": "PID",
        "platformPartnerId": "42",
        "priority": "NORMAL",
        "eventReportGates": ["gate"],
        "refId": "c1-b000001",
        "source": "+4790000000",
        "destinations": ["+4791234567", "NO.123"],
        "messages": [{"type": "text", "text": {"body": "hi"}}],
    }


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, 112400, LinkAuthError),
        (403, 112401, LinkAuthError),
        (400, 112402, LinkRequestError),
        (400, 112505, LinkRequestError),
        (400, 112506, LinkRequestError),
        (500, 112500, LinkTransientError),
        (503, None, LinkTransientError),  # unavailable: nothing was processed
        (502, None, LinkInDoubtError),  # a proxy's answer: LINK may have queued it
        (504, None, LinkInDoubtError),
        (418, None, LinkRequestError),
    ],
)
def test_error_responses_map_to_typed_errors(
    status: int, code: int | None, error: type[LinkError]
) -> None:
    body = {"resultCode": code, "description": "nope", "translatedDescription": None}

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if code else httpx.Response(status, text="<html>")

    with pytest.raises(error) as caught:
        client(handler).send(REQUEST)
    assert caught.value.result_code == code
    assert caught.value.http_status == status


def test_a_refused_connection_is_transient_because_nothing_was_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(LinkTransientError):
        client(handler).send(REQUEST)


def test_a_read_timeout_leaves_the_request_in_doubt() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(LinkInDoubtError):
        client(handler).send(REQUEST)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"resultCode": 112001, "messageIds": ["only-one"]}),
    ],
)
def test_an_unusable_200_answer_leaves_the_request_in_doubt(response: httpx.Response) -> None:
    with pytest.raises(LinkInDoubtError):
        client(lambda _: response).send(REQUEST)


def test_media_upload_is_multipart_and_returns_the_plain_text_id() -> None:
    seen: dict[str, bytes] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = request.read()
        seen["type"] = request.headers["content-type"].encode()
        return httpx.Response(
            200, text="1192798951408501\n", headers={"content-type": "text/plain"}
        )

    media_id, _ = client(handler).upload_media(
        source="+4790000000", content_type="image/png", filename="a.png", data=b"\x89PNG"
    )
    assert media_id == "1192798951408501"
    assert seen["type"].startswith(b"multipart/form-data")
    for part in (
        b'name="mediaContentType"',
        b"image/png",
        b'name="platformPartnerId"',
        b'name="media"',
    ):
        assert part in seen["body"]


def test_a_media_error_carries_its_status_code() -> None:
    body = {
        "status": 112502,
        "description": "Unsupported media type",
        "translatedDescription": None,
    }
    with pytest.raises(LinkRequestError, match="Unsupported media type") as caught:
        client(lambda _: httpx.Response(400, json=body)).upload_media(
            source="+4790000000", content_type="image/gif", filename="a.gif", data=b"GIF"
        )
    assert caught.value.result_code == 112502


def test_credentials_never_show_the_password() -> None:
    assert "secret-password" not in repr(CREDS)


@pytest.mark.parametrize(
    ("description", "details", "code"),
    [
        ("(#131049) This message was not delivered", None, 131049),
        ("(#100)Invalid parameter ", "Either one of media ID or link must be present", 100),
        ("Not delivered", "(#130429) Rate limit hit", 130429),
        ("delivered", None, None),
    ],
)
def test_whatsapp_error_codes_are_read_from_the_description(
    description: str, details: str | None, code: int | None
) -> None:
    assert whatsapp_error_code(description, details) == code
