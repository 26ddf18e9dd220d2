"""Meta's Cloud API client: what it posts, how it reads answers (seed 000, seed 002
'Template held for Pacing'), and how Graph errors map into the error tree; the one at a
time client through httpx's MockTransport, the fan-out's sender over real loopback
sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dispatcher.errors import (
    ConfigurationError,
    LinkAuthError,
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.providers.base import Level, Provider
from dispatcher.providers.meta.client import MetaClient, MetaCredentials
from dispatcher.providers.meta.models import MetaAnswer, MetaRequest, read_answer
from tests.unit.providers.conftest import REQUEST
from tests.unit.providers.test_concurrent_sender import Handler, answering, hang_up

CREDS = MetaCredentials(
    base_url="https://graph.test",
    access_token="secret-token",
    api_version="v23.0",
    waba_id="102290129340398",
)
NUMBER = "106540352242922"
PATH = f"/v23.0/{NUMBER}/messages"
WAMID = "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"


def request(destination: str = "+16505551234", ref_id: str = "c1-b0000001") -> MetaRequest:
    content = b'"type":"text","text":{"body":"hi"}'
    return MetaRequest(PATH, ref_id, [destination], [{"type": "text", "text": {"body": "hi"}}],
                       content)  # fmt: skip


def client(handler: Callable[[httpx.Request], httpx.Response]) -> MetaClient:
    return MetaClient(CREDS, transport=httpx.MockTransport(handler))


def accepted(**message: Any) -> dict[str, Any]:
    """Seed 000's answer to a send to a phone number."""
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": WAMID, **message}],
    }


def graph_error(code: int, **extra: Any) -> dict[str, Any]:
    """Seed 000's error body."""
    return {
        "error": {
            "message": f"(#{code}) Something about it",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "what Meta saw"},
            "fbtrace_id": "AbCdEf123",
            **extra,
        }
    }


def test_the_client_is_a_provider_named_meta() -> None:
    meta = MetaClient(CREDS)
    try:
        assert isinstance(meta, Provider)
        assert meta.name == "Meta"
    finally:
        meta.close()


def test_send_posts_the_body_with_the_bearer_token_to_the_number_s_path() -> None:
    seen: dict[str, Any] = {}

    def handler(http: httpx.Request) -> httpx.Response:
        seen.update(url=str(http.url), auth=http.headers["authorization"],
                    body=json.loads(http.content), type=http.headers["content-type"])  # fmt: skip
        return httpx.Response(200, json=accepted(message_status="accepted"))

    answer = client(handler).send(request())

    assert seen == {
        "url": f"https://graph.test{PATH}",
        "auth": "Bearer secret-token",
        "type": "application/json",
        "body": {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+16505551234",
            "biz_opaque_callback_data": "c1-b0000001",
            "type": "text",
            "text": {"body": "hi"},
        },
    }
    assert isinstance(answer, MetaAnswer)
    assert (answer.result_code, answer.message_ids, answer.held_for_quality) == (
        None,
        [WAMID],
        False,
    )
    assert answer.named_identifiers == ("16505551234", None, None)


@pytest.mark.parametrize(
    ("contacts", "named"),
    [
        # seed 000: a send to a BSUID names the user id only
        ([{"input": "US.13491208655302741918", "user_id": "US.13491208655302741918"}],
         (None, "US.13491208655302741918", None)),
        ([{"input": "+16505551234", "wa_id": "16505551234", "user_id": "US.1",
           "parent_user_id": "US.ENT.2"}], ("16505551234", "US.1", "US.ENT.2")),
        ([{"input": "+16505551234"}], ()),
        ([], ()),
        (None, ()),
    ],
)  # fmt: skip
def test_the_answer_names_the_person_as_contacts_gives_them(
    contacts: list[dict[str, str]] | None, named: tuple[str | None, ...]
) -> None:
    body: dict[str, Any] = {"messaging_product": "whatsapp", "messages": [{"id": WAMID}]}
    if contacts is not None:
        body["contacts"] = contacts

    answer = read_answer(json.dumps(body).encode())

    assert answer is not None and answer.named_identifiers == named


@pytest.mark.parametrize(
    ("status", "held"),
    [
        ("accepted", False),
        (None, False),
        ("held_for_quality_assessment", True),
        # seed 002's example writes the status as a sentence
        ("Message has been held because quality assessment is pending", True),
    ],
)
def test_a_message_held_for_template_pacing_says_so(status: str | None, held: bool) -> None:
    message = {} if status is None else {"message_status": status}

    answer = read_answer(json.dumps(accepted(**message)).encode())

    assert answer is not None
    assert answer.held_for_quality is held
    assert answer.message_status == status


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"messages": []}',
        b'{"messages": [{"id": ""}]}',
        b'{"messages": [{"id": 5}]}',
        b'{"messages": [{"id": "a"}, {"id": "b"}]}',  # one person, one id
        b'{"messages": [{"id": "a", "message_status": 3}]}',
    ],
)
def test_an_unusable_200_answer_leaves_the_request_in_doubt(body: bytes) -> None:
    with pytest.raises(LinkInDoubtError):
        client(lambda _: httpx.Response(200, content=body)).send(request())


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, 190, LinkAuthError),  # token expired or invalid
        (403, 10, LinkAuthError),  # permission denied
        (403, 200, LinkAuthError),  # API permission (200-299)
        (400, 299, LinkAuthError),
        (400, 131031, LinkAuthError),  # account locked: nothing will work
        (400, 130429, LinkTransientError),  # throughput reached
        (400, 131056, LinkTransientError),  # pair rate limit
        (400, 80007, LinkTransientError),
        (429, 4, LinkTransientError),
        (500, 131000, LinkTransientError),  # a Graph error body: Meta sent nothing
        (503, 131016, LinkTransientError),
        (500, 1, LinkTransientError),
        (400, 2, LinkTransientError),
        (400, 133004, LinkTransientError),
        (400, 100, LinkRequestError),
        (400, 131008, LinkRequestError),
        (400, 131009, LinkRequestError),
        (400, 131026, LinkRequestError),
        (400, 131047, LinkRequestError),
        (400, 131062, LinkRequestError),  # seed 000: no BSUID for this message
        (404, 132001, LinkRequestError),
        (400, 132000, LinkRequestError),
        (400, 999999, LinkRequestError),  # unknown: by its HTTP status
        (500, 999999, LinkTransientError),
        (401, 999999, LinkAuthError),
    ],
)
def test_graph_errors_map_to_typed_errors_with_code_details_and_trace_id(
    status: int, code: int, error: type[LinkError]
) -> None:
    meta = client(lambda _: httpx.Response(status, json=graph_error(code)))

    with pytest.raises(LinkError) as raised:
        meta.send(request())

    assert type(raised.value) is error
    assert (raised.value.result_code, raised.value.http_status) == (code, status)
    text = str(raised.value)
    assert f"(#{code})" in text and "what Meta saw" in text and "AbCdEf123" in text


def test_an_error_names_its_subcode_and_reads_without_a_code_prefix() -> None:
    body = {"error": {"message": "Invalid parameter", "code": 100, "error_subcode": 33,
                      "error_data": {"details": "Unknown object"}}}  # fmt: skip

    with pytest.raises(LinkRequestError) as raised:
        client(lambda _: httpx.Response(400, json=body)).send(request())

    assert str(raised.value) == "Meta 400: (#100) Invalid parameter: Unknown object (subcode 33)"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (502, b"<html>bad gateway</html>", LinkInDoubtError),  # Meta may have taken it
        (504, b"", LinkInDoubtError),
        (500, b'{"error": "no"}', LinkInDoubtError),
        (503, b"", LinkTransientError),  # unavailable: nothing was processed
        (429, b"", LinkTransientError),
        (401, b"", LinkAuthError),
        (400, b"???", LinkRequestError),
    ],
)
def test_answers_without_a_graph_error_map_by_their_status(
    status: int, body: bytes, error: type[LinkError]
) -> None:
    with pytest.raises(LinkError) as raised:
        client(lambda _: httpx.Response(status, content=body)).send(request())

    assert type(raised.value) is error
    assert raised.value.result_code is None


def test_a_refused_connection_is_transient_because_nothing_was_sent() -> None:
    def refuse(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(LinkTransientError):
        client(refuse).send(request())


def test_a_read_timeout_leaves_the_request_in_doubt() -> None:
    def slow(_: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("late")

    with pytest.raises(LinkInDoubtError, match="c1-b0000001"):
        client(slow).send(request())


def test_only_meta_s_own_requests_can_be_sent() -> None:
    with pytest.raises(TypeError, match="Meta sends the requests it built"):
        client(lambda _: httpx.Response(200)).send(REQUEST)  # type: ignore[arg-type]


def test_media_upload_is_multipart_to_the_number_and_returns_the_id() -> None:
    seen: dict[str, Any] = {}

    def handler(http: httpx.Request) -> httpx.Response:
        seen.update(url=str(http.url), type=http.headers["content-type"], body=http.content)
        return httpx.Response(200, json={"id": "1013859600285441"},
                              headers={"X-Simulator-Instance": "sim-1"})  # fmt: skip

    uploaded = client(handler).upload_media(
        source=NUMBER, content_type="image/png", filename="banner.png", data=b"\x89PNG..."
    )

    assert uploaded == ("1013859600285441", "sim-1")
    assert seen["url"] == f"https://graph.test/v23.0/{NUMBER}/media"
    assert seen["type"].startswith("multipart/form-data")
    body = seen["body"]
    assert b'name="messaging_product"\r\n\r\nwhatsapp' in body
    assert b'name="type"\r\n\r\nimage/png' in body
    assert b'name="file"; filename="banner.png"' in body and b"\x89PNG..." in body


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, graph_error(131053), LinkRequestError),
        (503, graph_error(2), LinkTransientError),
        (200, {"no": "id"}, LinkRequestError),
    ],
)
def test_a_media_upload_failure_is_typed(
    status: int, body: dict[str, Any], error: type[LinkError]
) -> None:
    meta = client(lambda _: httpx.Response(status, json=body))

    with pytest.raises(error):
        meta.upload_media(source=NUMBER, content_type="image/png", filename="a.png", data=b"x")


def phone_number(**fields: Any) -> dict[str, Any]:
    return {
        "display_phone_number": "+47 900 00 000",
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_10K",
        "throughput": {"level": "HIGH"},
        "name_status": "APPROVED",
        "id": NUMBER,
        **fields,
    }


def test_sender_info_reads_the_phone_number_s_graph_fields() -> None:
    seen: list[httpx.URL] = []

    def handler(http: httpx.Request) -> httpx.Response:
        seen.append(http.url)
        return httpx.Response(200, json=phone_number(
            health_status={"can_send_message": "AVAILABLE", "entities": []}
        ))  # fmt: skip

    info = client(handler).sender_info(NUMBER)

    assert (info.level, info.tier, info.quality, info.blocked, info.limited) == (
        Level.HIGH,
        "TIER_10K",
        "GREEN",
        None,
        None,
    )
    assert info.messages_per_second is None
    assert seen[0].path == f"/v23.0/{NUMBER}"
    assert set(seen[0].params["fields"].split(",")) == {
        "display_phone_number", "quality_rating", "messaging_limit_tier", "throughput",
        "name_status", "health_status", "is_on_biz_app",
    }  # fmt: skip


def test_a_number_also_in_the_business_app_is_capped_at_20_a_second() -> None:
    fields = phone_number(is_on_biz_app=True)

    info = client(lambda _: httpx.Response(200, json=fields)).sender_info(NUMBER)

    assert (info.level, info.messages_per_second) == (Level.HIGH, 20)


def test_a_blocked_number_says_why_and_a_limited_one_what_limits_it() -> None:
    blocked = phone_number(health_status={
        "can_send_message": "BLOCKED",
        "entities": [
            {"entity_type": "PHONE_NUMBER", "id": NUMBER, "can_send_message": "AVAILABLE"},
            {"entity_type": "WABA", "id": "1", "can_send_message": "BLOCKED", "errors": [
                {"error_code": 141006, "error_description": "payment method issue",
                 "possible_solution": "add a payment method"}]},
        ],
    })  # fmt: skip
    limited = phone_number(name_status="DECLINED", throughput={"level": "NOT_APPLICABLE"},
                           health_status={"can_send_message": "LIMITED", "entities": [
        {"entity_type": "PHONE_NUMBER", "can_send_message": "LIMITED",
         "additional_info": ["messaging limit reached"]}]})  # fmt: skip

    blocked_info = client(lambda _: httpx.Response(200, json=blocked)).sender_info(NUMBER)
    limited_info = client(lambda _: httpx.Response(200, json=limited)).sender_info(NUMBER)

    assert blocked_info.blocked == "141006 - payment method issue - add a payment method"
    assert blocked_info.limited is None
    assert limited_info.blocked is None
    assert limited_info.limited == "messaging limit reached; display name DECLINED"
    assert limited_info.level is Level.UNKNOWN


def template(name: str, status: str = "APPROVED") -> dict[str, Any]:
    return {"name": name, "language": "en", "status": status, "category": "MARKETING",
            "id": name, "components": [{"type": "BODY", "text": "Hi {{1}}"}]}  # fmt: skip


def test_templates_are_the_waba_s_every_page_and_kept_a_while() -> None:
    seen: list[httpx.URL] = []

    def handler(http: httpx.Request) -> httpx.Response:
        seen.append(http.url)
        if "after" not in http.url.params:
            return httpx.Response(200, json={
                "data": [template("a")],
                "paging": {"cursors": {"after": "CUR"}, "next": "https://graph.test/next"},
            })  # fmt: skip
        return httpx.Response(200, json={"data": [template("b", "PAUSED")], "paging": {}})

    meta = client(handler)
    found = meta.templates(NUMBER)
    again = meta.templates(NUMBER)

    assert [(t.name, t.status, t.body_parameters) for t in found] == [
        ("a", "APPROVED", 1),
        ("b", "PAUSED", 1),
    ]
    assert again == found and len(seen) == 2
    assert seen[0].path == "/v23.0/102290129340398/message_templates"
    assert seen[1].params["after"] == "CUR"


def test_templates_without_a_waba_id_is_a_configuration_error() -> None:
    meta = MetaClient(MetaCredentials("https://graph.test", "t", "v23.0", None))
    with pytest.raises(ConfigurationError, match="META_WABA_ID"):
        meta.templates(NUMBER)


def test_credentials_never_show_the_token() -> None:
    assert "secret-token" not in repr(CREDS)
    assert "secret-token" not in repr(MetaClient(CREDS).credentials)


def test_the_account_digest_differs_by_token_and_endpoint_not_by_number() -> None:
    other_token = MetaCredentials("https://graph.test", "other", "v23.0", "102290129340398")
    other_url = MetaCredentials("https://graph2.test", "secret-token", "v23.0", "102290129340398")
    assert len({CREDS.account, other_token.account, other_url.account}) == 3
    assert CREDS.account == MetaCredentials("https://graph.test/", "secret-token", "v24.0",
                                            "102290129340398").account  # fmt: skip


# --- the fan-out's sender, over loopback (the servers of the LINK sender's tests) ---------


async def send_through(handler: Handler, requests: list[MetaRequest]) -> list[Any]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    meta = MetaClient(MetaCredentials(f"http://127.0.0.1:{port}/graph", "secret-token"),
                      timeout_seconds=2)  # fmt: skip
    sender = meta.concurrent(4)
    try:
        return await sender.send_all(requests)
    finally:
        await sender.aclose()
        server.close()
        meta.close()


def test_the_fan_out_sender_posts_each_number_s_path_with_the_bearer_token() -> None:
    seen: list[bytes] = []
    body = json.dumps(accepted(message_status="held_for_quality_assessment")).encode()
    other = MetaRequest("/v23.0/999/messages", "c1-b2", ["NO.1"], [{}], b'"type":"text"')

    answers = asyncio.run(
        send_through(answering(200, body, seen, keep_alive=True), [request(), other])
    )

    assert all(isinstance(a, MetaAnswer) and a.held_for_quality for a in answers)
    heads = sorted(seen[0::2])
    assert heads[0].startswith(b"POST /graph/v23.0/106540352242922/messages HTTP/1.1\r\n")
    assert heads[1].startswith(b"POST /graph/v23.0/999/messages HTTP/1.1\r\n")
    assert all(b"\r\nAuthorization: Bearer secret-token\r\n" in head for head in heads)
    assert sorted(json.loads(p)["biz_opaque_callback_data"] for p in seen[1::2]) == [
        "c1-b0000001",
        "c1-b2",
    ]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, json.dumps(graph_error(130429)).encode(), LinkTransientError),
        (400, json.dumps(graph_error(131062)).encode(), LinkRequestError),
        (401, json.dumps(graph_error(190)).encode(), LinkAuthError),
        (502, b"<html>bad gateway</html>", LinkInDoubtError),
        (200, b"not json", LinkInDoubtError),
    ],
)
def test_the_fan_out_sender_maps_answers_as_the_one_at_a_time_client(
    status: int, body: bytes, expected: type[LinkError]
) -> None:
    [result] = asyncio.run(send_through(answering(status, body, keep_alive=True), [request()]))

    assert type(result) is expected, result


def test_a_dropped_connection_after_the_request_left_is_in_doubt() -> None:
    [result] = asyncio.run(send_through(hang_up, [request()]))

    assert isinstance(result, LinkInDoubtError)
