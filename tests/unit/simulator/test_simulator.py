"""The LINK gateway simulator, checked against the API document (seed 004)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.simulator import SimulatorConfig, create_app
from dispatcher.simulator.identity import derive_bsuids

AUTH = ("demo", "demo")
SOURCE = "+4670000000"
NO_AUTH = httpx.Auth()  # the base flow sends requests as they are
DROP = object()  # marks a key to remove from the valid request


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text_message(body: str = "hello") -> dict[str, Any]:
    return {"type": "text", "text": {"body": body}}


def template_message(**template: Any) -> dict[str, Any]:
    return {
        "type": "template",
        "template": {"name": "promo", "language": {"code": "en"}, **template},
    }


def changed(valid: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with ``changes`` applied: a value of DROP removes its key."""
    for key, value in changes.items():
        if value is DROP:
            valid.pop(key)
        else:
            valid[key] = value
    return valid


def message_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "platformId": "platform",
        "platformPartnerId": "partner",
        "priority": "NORMAL",
        "refId": "ref-1",
        "source": SOURCE,
        "destinations": ["+46701234567"],
        "messages": [template_message()],
    }
    return changed(request, changes)


@asynccontextmanager
async def asgi_client(config: SimulatorConfig | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a simulator app in-process, its lifespan running."""
    app = create_app(config or SimulatorConfig(seed=7))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://simulator", auth=AUTH
        ) as client,
    ):
        yield client


async def stats_of(client: httpx.AsyncClient) -> dict[str, Any]:
    stats: dict[str, Any] = (await client.get("/_simulator/stats", auth=NO_AUTH)).json()
    return stats


# -- authentication and request errors -------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer abc",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ],
    ids=["missing", "other-scheme", "bad-base64", "no-colon"],
)
async def test_request_without_valid_auth_header_is_refused_with_112400(header: str | None) -> None:
    async with asgi_client() as client:
        headers = {"Authorization": header} if header else {}
        response = await client.post(
            "/messages", json=message_request(), headers=headers, auth=NO_AUTH
        )
        if header is None:
            assert "authorization" not in response.request.headers
    assert response.status_code == 401
    assert response.json() == {
        "resultCode": 112400,
        "description": "Unauthorized",
        "translatedDescription": None,
    }


@pytest.mark.anyio
async def test_request_with_wrong_credentials_is_refused_with_112401() -> None:
    async with asgi_client() as client:
        response = await client.post("/messages", json=message_request(), auth=("demo", "nope"))
        assert (await stats_of(client))["rejected_requests"] == {"112401": 1}
    assert response.status_code == 403
    assert response.json()["resultCode"] == 112401


@pytest.mark.anyio
@pytest.mark.parametrize("field", ["platformId", "platformPartnerId"])
async def test_request_naming_other_platform_ids_is_refused_with_112401(field: str) -> None:
    config = SimulatorConfig(platform_id="platform", platform_partner_id="partner")
    async with asgi_client(config) as client:
        response = await client.post("/messages", json=message_request(**{field: "other"}))
        accepted = await client.post("/messages", json=message_request())
    assert response.status_code == 403
    assert response.json()["resultCode"] == 112401
    assert accepted.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b"{not json", b"", "\u00e9".encode("latin-1")])
async def test_body_that_is_not_json_is_refused_with_112505(body: bytes) -> None:
    async with asgi_client() as client:
        response = await client.post(
            "/messages", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["resultCode"] == 112505


def _with_message(message: Any) -> dict[str, Any]:
    return {"messages": [message]}


SCHEMA_VIOLATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("not-an-object", {"__body__": ["a list"]}, "request"),
    ("missing-platformId", {"platformId": DROP}, "platformId"),
    ("missing-platformPartnerId", {"platformPartnerId": DROP}, "platformPartnerId"),
    ("missing-refId", {"refId": DROP}, "refId"),
    ("empty-refId", {"refId": ""}, "refId"),
    ("missing-source", {"source": DROP}, "source"),
    ("source-not-msisdn", {"source": "LINK"}, "source"),
    ("missing-priority", {"priority": DROP}, "priority"),
    ("unknown-priority", {"priority": "URGENT"}, "priority"),
    ("priority-not-string", {"priority": ["NORMAL"]}, "priority"),
    ("missing-destinations", {"destinations": DROP}, "destinations"),
    ("empty-destinations", {"destinations": []}, "destinations"),
    ("destinations-not-list", {"destinations": "+46701234567"}, "destinations"),
    ("destination-not-string", {"destinations": ["+46701234567", 46701234567]}, "destinations[1]"),
    ("msisdn-too-short", {"destinations": ["+123456"]}, "destinations[0]"),
    ("msisdn-too-long", {"destinations": ["+1234567890123456"]}, "destinations[0]"),
    ("msisdn-with-spaces", {"destinations": ["+46 70 123 45 67"]}, "destinations[0]"),
    ("bsuid-lowercase-country", {"destinations": ["se.1181579921"]}, "destinations[0]"),
    ("bsuid-without-id", {"destinations": ["SE."]}, "destinations[0]"),
    ("bsuid-id-too-long", {"destinations": ["SE." + "1" * 129]}, "destinations[0]"),
    ("bsuid-bad-char", {"destinations": ["SE.1181-5799"]}, "destinations[0]"),
    ("parent-bsuid-without-id", {"destinations": ["SE.ENT."]}, "destinations[0]"),
    ("missing-messages", {"messages": DROP}, "messages"),
    ("empty-messages", {"messages": []}, "messages"),
    ("message-not-object", {"messages": ["hello"]}, "messages[0]"),
    ("message-without-type", _with_message({"text": {"body": "x"}}), "messages[0].type"),
    ("message-unknown-type", _with_message({"type": "fax"}), "messages[0].type"),
    ("template-missing", _with_message({"type": "template"}), "messages[0].template"),
    (
        "template-without-name",
        _with_message({"type": "template", "template": {"language": {"code": "en"}}}),
        "messages[0].template.name",
    ),
    (
        "template-without-language-code",
        _with_message({"type": "template", "template": {"name": "t", "language": {}}}),
        "messages[0].template.language.code",
    ),
    (
        "template-header-media-with-id-and-link",
        _with_message(
            template_message(
                components=[
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "image", "image": {"id": "1", "link": "https://x/a.png"}}
                        ],
                    }
                ]
            )
        ),
        "messages[0].template.components[0].parameters[0].image",
    ),
    (
        "template-cards-not-list",
        _with_message(template_message(components=[{"type": "carousel", "cards": 5}])),
        "messages[0].template.components[0].cards",
    ),
    (
        "template-card-not-object",
        _with_message(template_message(components=[{"type": "carousel", "cards": [5]}])),
        "messages[0].template.components[0].cards[0]",
    ),
    (
        "template-card-component-without-type",
        _with_message(
            template_message(components=[{"type": "carousel", "cards": [{"components": [{}]}]}])
        ),
        "messages[0].template.components[0].cards[0].components[0].type",
    ),
    (
        "template-components-not-list",
        _with_message(template_message(components={"type": "body"})),
        "messages[0].template.components",
    ),
    (
        "template-component-not-object",
        _with_message(template_message(components=["body"])),
        "messages[0].template.components[0]",
    ),
    (
        "template-parameters-not-list",
        _with_message(template_message(components=[{"type": "body", "parameters": {}}])),
        "messages[0].template.components[0].parameters",
    ),
    (
        # The first fault in document order is the one named.
        "template-parameter-without-type-before-one-not-object",
        _with_message(template_message(components=[{"type": "body", "parameters": [{}, 5]}])),
        "messages[0].template.components[0].parameters[0].type",
    ),
    ("text-without-body", _with_message({"type": "text", "text": {}}), "messages[0].text.body"),
    (
        "text-preview-not-boolean",
        _with_message({**text_message(), "previewUrl": "yes"}),
        "messages[0].previewUrl",
    ),
    *[
        (
            f"{kind}-with-id-and-link",
            _with_message({"type": kind, kind: {"id": "1", "link": "https://example.com/f"}}),
            f"messages[0].{kind}",
        )
        for kind in ("image", "video", "document", "audio", "sticker")
    ],
    *[
        (
            f"{kind}-without-id-or-link",
            _with_message({"type": kind, kind: {}}),
            f"messages[0].{kind}",
        )
        for kind in ("image", "video", "document", "audio", "sticker")
    ],
    (
        "image-link-not-http",
        _with_message({"type": "image", "image": {"link": "ftp://example.com/a.png"}}),
        "messages[0].image.link",
    ),
    (
        "location-without-latitude",
        _with_message({"type": "location", "location": {"longitude": 18.07}}),
        "messages[0].location.latitude",
    ),
    ("contacts-empty", _with_message({"type": "contacts", "contacts": []}), "messages[0].contacts"),
    (
        "contact-not-object",
        _with_message({"type": "contacts", "contacts": ["J S"]}),
        "messages[0].contacts[0]",
    ),
    (
        "contact-name-in-metas-spelling",
        _with_message({"type": "contacts", "contacts": [{"name": {"formatted_name": "J S"}}]}),
        "messages[0].contacts[0].name.formattedName",
    ),
    (
        "interactive-without-action",
        _with_message({"type": "interactive", "interactive": {"type": "list"}}),
        "messages[0].interactive.action",
    ),
    (
        "interactive-header-media-without-id-or-link",
        _with_message(
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": {"type": "image", "image": {}},
                    "action": {},
                },
            }
        ),
        "messages[0].interactive.header.image",
    ),
    (
        "interactive-header-type-not-string",
        _with_message(
            {
                "type": "interactive",
                "interactive": {"type": "button", "header": {"type": ["image"]}, "action": 1},
            }
        ),
        "messages[0].interactive.action",
    ),
    ("platformServiceId-not-string", {"platformServiceId": 7}, "platformServiceId"),
    ("platformServiceType-not-string", {"platformServiceType": ["x"]}, "platformServiceType"),
    ("platformTransactionId-not-string", {"platformTransactionId": 1.5}, "platformTransactionId"),
    ("relativeValidityTime-not-integer", {"relativeValidityTime": "1000"}, "relativeValidityTime"),
    ("relativeValidityTime-boolean", {"relativeValidityTime": True}, "relativeValidityTime"),
    ("absoluteValidityTime-not-rfc3339", {"absoluteValidityTime": "tomorrow"}, "absoluteValidity"),
    (
        "absoluteValidityTime-bad-month",
        {"absoluteValidityTime": "2030-13-01T00:00:00Z"},
        "absolute",
    ),
    ("eventReportGates-not-list", {"eventReportGates": "gate"}, "eventReportGates"),
    ("eventReportGates-not-strings", {"eventReportGates": [1]}, "eventReportGates"),
    ("customParameters-not-object", {"customParameters": ["a"]}, "customParameters"),
    ("customParameters-nested", {"customParameters": {"a": {"b": "c"}}}, "customParameters.a"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("changes", "field"),
    [(changes, field) for _, changes, field in SCHEMA_VIOLATIONS],
    ids=[case_id for case_id, _, _ in SCHEMA_VIOLATIONS],
)
async def test_request_failing_the_schema_is_refused_with_112506_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    body = changes["__body__"] if "__body__" in changes else message_request(**changes)
    async with asgi_client() as client:
        response = await client.post("/messages", json=body)
        assert (await stats_of(client))["accepted_messages"] == 0
    assert response.status_code == 400
    error = response.json()
    assert error["resultCode"] == 112506
    assert error["translatedDescription"] is None
    assert error["description"].startswith(f"Validation error: {field}")


VALID_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("bsuid-destination", {"destinations": ["SE.13491208655302741918"]}),
    ("parent-bsuid-destination", {"destinations": ["SE.ENT.11815799212886844830"]}),
    ("msisdn-without-plus", {"destinations": ["46701234567"]}),
    ("mixed-destinations", {"destinations": ["+460000000001", "SE.11815799212886844830"]}),
    (
        "all-optional-fields",
        {
            "platformServiceId": "svc",
            "platformServiceType": "type",
            "platformTransactionId": "tx",
            "relativeValidityTime": 1584543059442,
            "absoluteValidityTime": "2020-03-18T16:49:21Z",
            "eventReportGates": ["unknown-gate"],
            "customParameters": {"campaign": "c1", "ott.whatsapp.logMessageContent": True},
        },
    ),
    ("optional-fields-null", {"platformServiceId": None, "customParameters": None}),
    ("priority-low", {"priority": "LOW"}),
    ("text-message", _with_message({**text_message(), "previewUrl": False})),
    ("image-by-link", _with_message({"type": "image", "image": {"link": "https://x.io/a.jpg"}})),
    ("sticker-by-id", _with_message({"type": "sticker", "sticker": {"id": "1361277605137496"}})),
    (
        "location",
        _with_message({"type": "location", "location": {"longitude": 18.07, "latitude": 59.31}}),
    ),
    (
        "contacts",
        _with_message({"type": "contacts", "contacts": [{"name": {"formattedName": "J S"}}]}),
    ),
    (
        # Seed 'Contacts message': the name is optional.
        "contacts-without-name",
        _with_message({"type": "contacts", "contacts": [{"phones": [{"phone": "+4791234567"}]}]}),
    ),
    (
        "interactive",
        _with_message(
            {
                "type": "interactive",
                "interactive": {"type": "button", "body": {"text": "?"}, "action": {}},
            }
        ),
    ),
    (
        "template-components-beside-template",
        _with_message({**template_message(), "components": [{"type": "body", "parameters": []}]}),
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "changes", [changes for _, changes in VALID_VARIANTS], ids=[i for i, _ in VALID_VARIANTS]
)
async def test_valid_request_variants_from_the_document_are_queued(changes: dict[str, Any]) -> None:
    async with asgi_client() as client:
        response = await client.post("/messages", json=message_request(**changes))
    assert response.status_code == 200, response.text
    assert response.json()["resultCode"] == 112001


@pytest.mark.anyio
async def test_queued_request_gets_one_unique_base62_id_per_destination() -> None:
    destinations = [f"+4670000000{n}" for n in range(5)]
    async with asgi_client() as client:
        first = await client.post("/messages", json=message_request(destinations=destinations))
        second = await client.post("/messages", json=message_request(destinations=destinations))
    body = first.json()
    assert body["resultCode"] == 112001
    assert body["description"] == "queued"
    ids = body["messageIds"] + second.json()["messageIds"]
    assert len(body["messageIds"]) == len(destinations)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9A-Za-z]{22}", message_id) for message_id in ids)


@pytest.mark.anyio
async def test_server_error_rate_answers_112500_and_queues_nothing() -> None:
    async with asgi_client(SimulatorConfig(error_rate=1.0)) as client:
        response = await client.post("/messages", json=message_request())
        stats = await stats_of(client)
    assert response.status_code == 500
    assert response.json()["resultCode"] == 112500
    assert stats["accepted_messages"] == 0
    assert stats["rejected_requests"] == {"112500": 1}


# -- accounting ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_count_requests_messages_destinations_and_ref_ids() -> None:
    async with asgi_client() as client:
        await client.post(
            "/messages",
            json=message_request(destinations=["+46701234567", "46701234568"], refId="a"),
        )
        await client.post("/messages", json=message_request(refId="a"))
        stats = (await client.get("/_simulator/stats", auth=NO_AUTH)).json()
    assert stats["requests"] == 2
    assert stats["accepted_messages"] == 3
    assert stats["destinations"] == {"+46701234567": 2, "+46701234568": 1}
    assert stats["ref_ids"] == {"a": 2}
    assert list(stats["per_second"]) == [SOURCE]
    assert sum(stats["per_second"][SOURCE].values()) == 3
    assert stats["max_per_second"][SOURCE] >= 2
    assert stats["excess_over_level"] == {SOURCE: 0}


@pytest.mark.anyio
async def test_users_count_an_msisdn_and_its_derived_bsuids_as_one_person() -> None:
    msisdn = "+46701234567"
    user_id, parent_id = derive_bsuids(msisdn)
    async with asgi_client() as client:
        for destination in (msisdn, user_id, parent_id, "SE.99999999999999999999"):
            await client.post("/messages", json=message_request(destinations=[destination]))
        stats = await stats_of(client)
    assert stats["users"] == {msisdn: 3, "SE.99999999999999999999": 1}
    assert len(stats["destinations"]) == 4


@pytest.mark.anyio
async def test_a_bsuid_used_before_its_msisdn_is_merged_into_the_same_person() -> None:
    msisdn = "+46701234567"
    user_id, _ = derive_bsuids(msisdn)
    async with asgi_client() as client:
        await client.post("/messages", json=message_request(destinations=[user_id]))
        await client.post("/messages", json=message_request(destinations=[msisdn]))
        stats = await stats_of(client)
    assert stats["users"] == {msisdn: 2}


def test_derived_bsuids_have_the_document_format_and_region() -> None:
    user_id, parent_id = derive_bsuids("+46735555555")
    assert re.fullmatch(r"SE\.\d{20}", user_id)
    assert re.fullmatch(r"SE\.ENT\.\d{20}", parent_id)
    assert derive_bsuids("+46735555555") == (user_id, parent_id)
    assert derive_bsuids("+99912345678")[0].startswith("ZZ.")


@pytest.mark.anyio
async def test_reset_clears_all_state() -> None:
    async with asgi_client() as client:
        await client.post("/messages", json=message_request())
        await client.post("/messages", json={}, auth=NO_AUTH)
        response = await client.post("/_simulator/reset", auth=NO_AUTH)
        stats = await stats_of(client)
    assert response.status_code == 200
    assert stats["requests"] == 0
    assert stats["rejected_requests"] == {}
    assert stats["users"] == {}


@pytest.mark.anyio
async def test_healthz_answers_ok() -> None:
    async with asgi_client() as client:
        response = await client.get("/healthz", auth=NO_AUTH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# -- media upload ------------------------------------------------------------------------------


def media_form(**changes: Any) -> dict[str, str]:
    form = {
        "source": SOURCE,
        "platformId": "platform",
        "platformPartnerId": "partner",
        "mediaContentType": "image/png",
    }
    return changed(form, changes)


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def webp_head(*, animated: bool, size: int) -> bytes:
    """A WebP as far as its kind goes: RIFF, WEBP, a VP8X chunk with or without the
    animation flag; padded to ``size`` bytes."""
    vp8x = b"VP8X" + (10).to_bytes(4, "little") + bytes([2 if animated else 0]) + b"\x00" * 9
    head = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WEBP" + vp8x
    return head + b"\x00" * (size - len(head))


@pytest.mark.anyio
async def test_an_animated_sticker_may_weigh_up_to_500kb() -> None:
    sticker = webp_head(animated=True, size=150 * 1024)
    async with asgi_client() as client:
        response = await client.post(
            "/media",
            data=media_form(mediaContentType="image/webp"),
            files={"media": ("s.webp", sticker, "image/webp")},
        )
    assert response.status_code == 200


@pytest.mark.anyio
async def test_media_upload_returns_a_numeric_id_as_plain_text_and_is_remembered() -> None:
    async with asgi_client() as client:
        response = await client.post(
            "/media", data=media_form(), files={"media": ("a.png", PNG, "image/png")}
        )
        stats = await stats_of(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.isdigit()
    assert stats["media_uploads"] == 1
    assert stats["media"] == [
        {
            "id": response.text,
            "sha256": hashlib.sha256(PNG).hexdigest(),
            "content_type": "image/png",
            "size": len(PNG),
            "source": SOURCE,
        }
    ]


MEDIA_ERRORS: list[tuple[str, dict[str, Any], dict[str, Any], int, int]] = [
    ("no-auth", {"auth": NO_AUTH}, {}, 401, 112400),
    ("wrong-credentials", {"auth": ("demo", "x")}, {}, 403, 112401),
    *[
        (f"missing-{name}", {}, {"data": media_form(**{name: DROP})}, 400, 112402)
        for name in ("source", "platformId", "platformPartnerId", "mediaContentType")
    ],
    ("source-without-plus", {}, {"data": media_form(source="4670000000")}, 400, 112402),
    ("missing-media-part", {}, {"files": {}}, 400, 112502),
    ("unsupported-type", {}, {"data": media_form(mediaContentType="image/gif")}, 400, 112502),
    (
        "sticker-over-500kb",
        {},
        {
            "data": media_form(mediaContentType="image/webp"),
            "files": {"media": ("s.webp", b"\x00" * (500 * 1024 + 1), "image/webp")},
        },
        400,
        112502,
    ),
    (
        "static-sticker-over-100kb",
        {},
        {
            "data": media_form(mediaContentType="image/webp"),
            "files": {
                "media": ("s.webp", webp_head(animated=False, size=150 * 1024), "image/webp")
            },
        },
        400,
        112502,
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("client_options", "request_options", "http_status", "code"),
    [case[1:] for case in MEDIA_ERRORS],
    ids=[case[0] for case in MEDIA_ERRORS],
)
async def test_media_upload_errors_use_the_documented_codes(
    client_options: dict[str, Any], request_options: dict[str, Any], http_status: int, code: int
) -> None:
    options: dict[str, Any] = {
        "data": media_form(),
        "files": {"media": ("a.png", PNG, "image/png")},
    }
    options.update(request_options)
    async with asgi_client() as client:
        response = await client.post("/media", **options, **client_options)
        assert (await stats_of(client))["media_uploads"] == 0
    assert response.status_code == http_status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == code
    assert body["translatedDescription"] is None
    assert isinstance(body["description"], str)


# -- phone number information ------------------------------------------------------------------


PHONE_INFO_KEYS = {
    "wabaId",
    "overallHealthStatus",
    "level",
    "numberCanSendMessages",
    "maxDailyConversations",
    "verifiedName",
    "qualityRating",
    "phoneNumberId",
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("health", "extra_keys"),
    [("AVAILABLE", set()), ("LIMITED", {"additional_info"}), ("BLOCKED", {"errors"})],
)
async def test_phone_number_information_reports_health_as_documented(
    health: str, extra_keys: set[str]
) -> None:
    config = SimulatorConfig.model_validate(
        {"health_status": health, "levels": {SOURCE: "HIGH"}, "messaging_tier": "TIER_10K"}
    )
    async with asgi_client(config) as client:
        response = await client.get(f"/platformId/p/platformPartnerId/pp/source/{SOURCE}")
    assert response.status_code == 200
    info = response.json()
    assert set(info) == PHONE_INFO_KEYS | extra_keys
    assert info["overallHealthStatus"] == info["numberCanSendMessages"] == health
    assert info["level"] == "HIGH"
    assert info["maxDailyConversations"] == "TIER_10K"
    assert info["qualityRating"] == "GREEN"
    if health == "LIMITED":
        assert all(isinstance(item, str) for item in info["additional_info"])
    if health == "BLOCKED":
        for error in info["errors"]:
            assert set(error) == {"error_code", "error_description", "possible_solution"}
            assert isinstance(error["error_code"], int)


@pytest.mark.anyio
async def test_phone_number_information_requires_auth() -> None:
    async with asgi_client() as client:
        response = await client.get(
            f"/platformId/p/platformPartnerId/pp/source/{SOURCE}", auth=NO_AUTH
        )
    assert response.status_code == 401
    assert response.json()["resultCode"] == 112400


# -- callbacks over real HTTP ------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


def reserve_port() -> socket.socket:
    """A bound socket nobody listens on yet: connections to it are refused until served."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Starlette, sock: socket.socket | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL."""
    sock = sock or reserve_port()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class Receiver:
    """A webhook endpoint that records every callback and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.callbacks: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/dlr", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        assert request.headers["content-type"] == "application/json"
        self.callbacks.append(await request.json())
        return Response(status_code=self.status)

    def by_message(self) -> dict[tuple[str, int], list[int]]:
        codes: dict[tuple[str, int], list[int]] = {}
        for callback in list(self.callbacks):
            key = (callback["messageId"], callback["messageIndex"])
            codes.setdefault(key, []).append(callback["resultCode"])
        return codes


@contextmanager
def simulator_with_receiver(
    receiver: Receiver, receiver_socket: socket.socket | None = None, **settings: Any
) -> Iterator[tuple[httpx.Client, Any]]:
    """A live simulator whose gate ``gate1`` points at ``receiver`` (which may not be up)."""
    receiver_socket = receiver_socket or reserve_port()
    host, port = receiver_socket.getsockname()
    settings = {"seed": 3, "dlr_delay_ms": 0, "callback_backoff_ms": 10, **settings}
    app = create_app(SimulatorConfig(gates={"gate1": f"http://{host}:{port}/dlr"}, **settings))
    with serve(app) as url, httpx.Client(base_url=url, auth=AUTH) as client:
        yield client, app.state.simulator


def send(client: httpx.Client, **changes: Any) -> list[str]:
    response = client.post("/messages", json=message_request(eventReportGates=["gate1"], **changes))
    assert response.status_code == 200, response.text
    message_ids: list[str] = response.json()["messageIds"]
    return message_ids


def callback_counts(client: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = client.get("/_simulator/stats").json()["callbacks"]
    return counts


def test_callbacks_arrive_in_order_with_the_document_fields_and_bsuids() -> None:
    receiver = Receiver()
    known_msisdn, stranger = "+46701234567", "SE.11815799212886844830"
    known_user_id, known_parent_id = derive_bsuids(known_msisdn)
    sock = reserve_port()
    with serve(receiver.app, sock), simulator_with_receiver(receiver, sock) as (client, _):
        send(client, destinations=[known_msisdn])
        destinations = [known_msisdn, known_parent_id, stranger]
        message_ids = send(
            client,
            destinations=destinations,
            refId="campaign-7",
            customParameters={"campaign": "c7"},
            messages=[template_message(), text_message()],
        )
        wait_until(lambda: callback_counts(client)["delivered"] == 3 + 3 * 2 * 3)
    codes = receiver.by_message()
    for message_id in message_ids:
        for index in (0, 1):
            assert codes[(message_id, index)] == [112006, 112003, 112007]
    by_key = {(c["messageId"], c["messageIndex"], c["resultCode"]): c for c in receiver.callbacks}
    sent = by_key[(message_ids[0], 0, 112006)]
    assert sent["refId"] == "campaign-7"
    assert sent["messageType"] == "TemplateMessage"
    assert sent["resultDescription"] == "sent"
    assert sent["gateCustomParameters"] == {}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sent["timestamp"])
    custom = sent["customParameters"]
    assert custom["campaign"] == "c7"
    assert custom["platformId"] == "platform"
    assert custom["platformPartnerId"] == "partner"
    assert custom["waMessageId"].startswith("wamid.")
    assert {"pricingModel", "pricingCategory", "pricingBillable", "pricingType"} <= set(custom)
    assert custom["destination"] == known_msisdn
    assert custom["whatsappUserId"] == known_user_id
    assert custom["whatsappParentUserId"] == known_parent_id
    assert by_key[(message_ids[0], 1, 112003)]["messageType"] == "text"
    # A parent BSUID derived earlier belongs to a known contact: the MSISDN is reported too.
    via_parent = by_key[(message_ids[1], 0, 112007)]["customParameters"]
    assert via_parent["destination"] == known_msisdn
    assert via_parent["whatsappParentUserId"] == known_parent_id
    # A BSUID the simulator never derived is a user known only by BSUID.
    unknown = by_key[(message_ids[2], 0, 112006)]["customParameters"]
    assert "destination" not in unknown
    assert unknown["whatsappUserId"] == stranger
    assert re.fullmatch(r"SE\.ENT\.\d{20}", unknown["whatsappParentUserId"])


def test_receiver_that_is_down_at_first_still_gets_every_callback() -> None:
    receiver = Receiver()
    sock = reserve_port()
    with simulator_with_receiver(receiver, sock, read_rate=0.0) as (client, simulator):
        message_ids = send(client, destinations=[f"+4670000000{n}" for n in range(4)])
        wait_until(lambda: callback_counts(client)["retried"] >= 4)
        assert asyncio.run(simulator.drain(0.01)) is False
        with serve(receiver.app, sock):
            wait_until(lambda: callback_counts(client)["pending"] == 0)
            assert asyncio.run(simulator.drain(1.0)) is True
        counts = callback_counts(client)
    assert counts["delivered"] == counts["scheduled"] == 8
    assert counts["dropped"] == 0
    assert receiver.by_message() == {(m, 0): [112006, 112003] for m in message_ids}


def test_callback_refused_with_4xx_is_not_retried_and_counted_as_rejected() -> None:
    receiver = Receiver(status=400)
    sock = reserve_port()
    with serve(receiver.app, sock), simulator_with_receiver(receiver, sock) as (client, _):
        send(client)
        wait_until(lambda: callback_counts(client)["pending"] == 0)
        counts = callback_counts(client)
    assert counts["rejected"] == 3
    assert counts["retried"] == 0
    assert len(receiver.callbacks) == 3


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_callback_answered_with_retryable_status_is_dropped_after_max_attempts(
    status: int,
) -> None:
    receiver = Receiver(status=status)
    sock = reserve_port()
    with (
        serve(receiver.app, sock),
        simulator_with_receiver(receiver, sock, callback_max_attempts=2, read_rate=0.0) as (
            client,
            _,
        ),
    ):
        send(client)
        wait_until(lambda: callback_counts(client)["pending"] == 0)
        counts = callback_counts(client)
    assert counts["dropped"] == 2
    assert counts["retried"] == 2
    assert [c["resultCode"] for c in receiver.callbacks] == [112006, 112006, 112003, 112003]


def test_messages_beyond_the_level_are_counted_as_excess_and_fail_with_130429() -> None:
    receiver = Receiver()
    sock = reserve_port()
    destinations = [f"+467000{n:05d}" for n in range(85)]  # STANDARD level: 80 per second
    with serve(receiver.app, sock), simulator_with_receiver(receiver, sock) as (client, _):
        message_ids = send(client, destinations=destinations)
        wait_until(lambda: callback_counts(client)["pending"] == 0)
        stats = client.get("/_simulator/stats").json()
    assert stats["excess_over_level"] == {SOURCE: 5}
    assert stats["max_per_second"] == {SOURCE: 85}
    codes = receiver.by_message()
    assert [codes[(m, 0)] for m in message_ids[:80]] == [[112006, 112003, 112007]] * 80
    assert [codes[(m, 0)] for m in message_ids[80:]] == [[112403]] * 5
    failed = [c for c in receiver.callbacks if c["resultCode"] == 112403]
    assert {c["resultDescription"] for c in failed} == {"(#130429) Rate limit hit"}
    assert all("metaErrorDetails" in c["customParameters"] for c in failed)


def test_message_with_a_media_id_never_uploaded_fails_with_131053() -> None:
    receiver = Receiver()
    sock = reserve_port()
    with serve(receiver.app, sock), simulator_with_receiver(receiver, sock) as (client, _):
        upload = client.post(
            "/media", data=media_form(), files={"media": ("a.png", PNG, "image/png")}
        )
        known, unknown = upload.text, "1192798951408501"
        message_ids = send(
            client,
            messages=[
                {"type": "image", "image": {"id": known}},
                {"type": "image", "image": {"id": unknown}},
            ],
        )
        wait_until(lambda: callback_counts(client)["pending"] == 0)
    codes = receiver.by_message()
    assert codes[(message_ids[0], 0)] == [112006, 112003, 112007]
    assert codes[(message_ids[0], 1)] == [112403]
    failure = next(c for c in receiver.callbacks if c["resultCode"] == 112403)
    assert failure["resultDescription"] == "(#131053) Media upload error"
    assert failure["messageType"] == "image"


def test_failure_rate_one_ends_every_message_with_a_documented_failure() -> None:
    receiver = Receiver()
    sock = reserve_port()
    with (
        serve(receiver.app, sock),
        simulator_with_receiver(receiver, sock, failure_rate=1.0) as (client, _),
    ):
        send(client, destinations=[f"+4670000{n:04d}" for n in range(20)])
        wait_until(lambda: callback_counts(client)["pending"] == 0)
    assert len(receiver.callbacks) == 20
    assert {c["resultCode"] for c in receiver.callbacks} <= {112403, 112404, 112406}


def test_failure_codes_name_the_whatsapp_error_of_every_drawn_failure() -> None:
    receiver = Receiver()
    sock = reserve_port()
    with (
        serve(receiver.app, sock),
        simulator_with_receiver(receiver, sock, failure_rate=1.0, failure_codes=[131048]) as (
            client,
            _,
        ),
    ):
        send(client, destinations=[f"+4670000{n:04d}" for n in range(10)])
        wait_until(lambda: callback_counts(client)["pending"] == 0)
    assert len(receiver.callbacks) == 10
    assert {(c["resultCode"], c["resultDescription"][:9]) for c in receiver.callbacks} == {
        (112403, "(#131048)")
    }


def test_the_client_reads_the_simulator_instance_under_the_name_the_simulator_sends() -> None:
    from dispatcher.providers.link import client
    from dispatcher.simulator import app as simulator_app

    assert client.SIMULATOR_INSTANCE_HEADER == simulator_app.SIMULATOR_INSTANCE_HEADER


def test_the_shortest_numbers_in_use_are_destinations() -> None:
    """Tokelau's numbers are seven digits with the country code (+690 xxxx), and valid:
    a request carrying one is accepted."""
    from dispatcher.simulator.identity import Kind, classify

    assert classify("+6902216") == (Kind.MSISDN, "+6902216")
