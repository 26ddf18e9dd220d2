"""The simulator's Cloud API account endpoints (Meta's reference): media upload, the phone
number's Graph fields and the WABA's template list."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.unit.simulator.test_meta_send import (
    NUMBER_ID,
    PATH,
    PERSON,
    graph_error,
    meta_client,
    stats_of,
    text_to,
)

MEDIA = f"/v23.0/{NUMBER_ID}/media"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
WABA_ID = "102290129340398"
FIELDS = (
    "display_phone_number,quality_rating,messaging_limit_tier,throughput,name_status,health_status"
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def upload_parts(
    data: bytes = PNG, content_type: str = "image/png", **fields: str
) -> dict[str, Any]:
    form = {"messaging_product": "whatsapp", "type": content_type, **fields}
    return {"data": form, "files": {"file": ("photo.png", data, content_type)}}


async def test_an_upload_answers_a_media_id_that_a_send_may_name() -> None:
    async with meta_client() as client:
        response = await client.post(MEDIA, **upload_parts())
        media_id = response.json()["id"]
        image = {**text_to(to=PERSON), "type": "image", "image": {"id": media_id}}
        sent = await client.post(PATH, json=image)
        stats = await stats_of(client)
        instance = (await client.get("/healthz")).headers["x-simulator-instance"]
    assert response.status_code == 200 and media_id.isdigit()
    assert response.headers["x-simulator-instance"] == instance
    assert sent.status_code == 200
    [record] = stats["media"]
    assert record == {
        "id": media_id,
        "sha256": hashlib.sha256(PNG).hexdigest(),
        "content_type": "image/png",
        "size": len(PNG),
        "source": "+4790000000",
    }


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        (upload_parts(messaging_product="sms"), 100),
        (
            {"data": {"messaging_product": "whatsapp"}, "files": {"file": ("a", PNG, "image/png")}},
            100,
        ),
        (upload_parts(content_type="image/gif"), 131053),
        (upload_parts(data=b"x" * (500 * 1024 + 1), content_type="image/webp"), 131053),
        ({"data": {"messaging_product": "whatsapp", "type": "image/png"}}, 131053),
    ],
    ids=["wrong-product", "no-type", "unsupported-type", "too-large", "no-file"],
)
async def test_an_upload_breaking_the_rules_is_refused(parts: dict[str, Any], code: int) -> None:
    async with meta_client() as client:
        if "files" not in parts:  # still multipart, without a file part
            parts = {**parts, "files": {"other": ("x", b"x", "text/plain")}}
        response = await client.post(MEDIA, **parts)
        stats = await stats_of(client)
    assert response.status_code == 400
    assert graph_error(response)["code"] == code
    assert stats["media_uploads"] == 0


async def test_an_upload_needs_the_token() -> None:
    async with meta_client() as client:
        response = await client.post(
            MEDIA, headers={"Authorization": "Bearer no"}, **upload_parts()
        )
    assert response.status_code == 401


async def test_scripted_upload_failures_are_answered_as_temporarily_unavailable() -> None:
    async with meta_client(upload_failures=1) as client:
        first = await client.post(MEDIA, **upload_parts())
        second = await client.post(MEDIA, **upload_parts())
    assert first.status_code == 503 and graph_error(first)["code"] == 2
    assert second.status_code == 200


async def test_the_phone_number_fields_describe_level_tier_quality_and_names() -> None:
    async with meta_client(levels={"+4790000000": "HIGH"}, messaging_tier="TIER_10K") as client:
        response = await client.get(f"/v23.0/{NUMBER_ID}", params={"fields": FIELDS})
    assert response.json() == {
        "id": NUMBER_ID,
        "display_phone_number": "+4790000000",
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_10K",
        "throughput": {"level": "HIGH"},
        "name_status": "APPROVED",
        "health_status": {
            "can_send_message": "AVAILABLE",
            "entities": [
                {"entity_type": "PHONE_NUMBER", "id": NUMBER_ID, "can_send_message": "AVAILABLE"}
            ],
        },
    }


@pytest.mark.parametrize(("health", "key"), [("LIMITED", "additional_info"), ("BLOCKED", "errors")])
async def test_a_limited_or_blocked_number_explains_itself(health: str, key: str) -> None:
    async with meta_client(health_status=health, quality_rating="RED") as client:
        response = await client.get(f"/v23.0/{NUMBER_ID}", params={"fields": FIELDS})
    body = response.json()
    assert body["quality_rating"] == "RED"
    assert body["health_status"]["can_send_message"] == health
    [entity] = body["health_status"]["entities"]
    assert entity["can_send_message"] == health and entity[key]


async def test_without_fields_the_default_ones_are_given() -> None:
    async with meta_client() as client:
        body = (await client.get(f"/v23.0/{NUMBER_ID}")).json()
    assert {"id", "display_phone_number", "verified_name", "quality_rating"} <= set(body)
    assert "health_status" not in body


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [(f"/v23.0/{NUMBER_ID}", 401, 190), ("/v23.0/999", 400, 100)],
    ids=["no-token", "unknown-number"],
)
async def test_phone_number_fields_need_the_token_and_a_known_number(
    path: str, status: int, code: int
) -> None:
    async with meta_client() as client:
        if status == 401:
            client.headers.pop("Authorization")
        response = await client.get(path)
    assert response.status_code == status
    assert graph_error(response)["code"] == code


async def test_the_template_list_is_paged_with_graph_cursors() -> None:
    async with meta_client() as client:
        pages: list[dict[str, Any]] = []
        url: str | None = f"/v23.0/{WABA_ID}/message_templates?limit=4"
        while url:
            pages.append((await client.get(url)).json())
            url = pages[-1].get("paging", {}).get("next")
        everything = (await client.get(f"/v23.0/{WABA_ID}/message_templates?limit=100")).json()
    names = [t["name"] for page in pages for t in page["data"]]
    assert [len(page["data"]) for page in pages] == [4, 4, 3]
    assert names == [t["name"] for t in everything["data"]]
    assert "next" not in everything["paging"]
    assert {"name", "language", "status", "category", "components", "id"} <= set(
        everything["data"][0]
    )


async def test_templates_of_another_waba_are_refused() -> None:
    async with meta_client() as client:
        response = await client.get("/v23.0/1/message_templates")
    assert response.status_code == 400
    assert graph_error(response)["code"] == 100
