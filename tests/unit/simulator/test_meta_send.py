"""The simulator's Cloud API send endpoint, checked against seeds 000 and 002 and Meta's
reference (``POST /{version}/{phone-number-id}/messages``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from dispatcher.simulator import SimulatorConfig, create_app
from dispatcher.simulator.identity import derive_bsuids

NUMBER_ID = "106540352242922"
PATH = f"/v23.0/{NUMBER_ID}/messages"
TOKEN = {"Authorization": "Bearer demo-token"}
PERSON = "+4791234567"
BSUID = "NO.12345678901234567890"
PARENT = "NO.ENT.12345678901234567890"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def meta_client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on an in-process simulator app, its lifespan running."""
    app = create_app(SimulatorConfig(**{"seed": 7, **settings}))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sim", headers=TOKEN) as client,
    ):
        yield client


def text_to(**addressee: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        **addressee,
        "type": "text",
        "text": {"body": "hello"},
    }


def contacts_to(contacts: list[Any]) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": PERSON, "type": "contacts", "contacts": contacts}


def template_to(name: str = "hello", parameters: int = 1, **addressee: str) -> dict[str, Any]:
    body = {"type": "body", "parameters": [{"type": "text", "text": "x"}] * parameters}
    template = {"name": name, "language": {"code": "en"}, "components": [body]}
    return {
        "messaging_product": "whatsapp",
        "to": PERSON,
        **addressee,
        "type": "template",
        "template": template,
    }


def login_code_to(**addressee: str) -> dict[str, Any]:
    """The default book's authentication template, its code in body and button."""
    body = template_to(name="login_code")
    body.pop("to")
    body.update(addressee)
    body["template"]["components"].append(
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "123456"}],
        }
    )
    return body


async def stats_of(client: httpx.AsyncClient) -> dict[str, Any]:
    stats: dict[str, Any] = (await client.get("/_simulator/stats")).json()
    return stats


def graph_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "OAuthException"
    assert error["message"].startswith(f"(#{error['code']}) ")
    assert error["fbtrace_id"]
    return error


async def test_send_to_a_phone_number_answers_with_its_wa_id_and_an_accepted_wamid() -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=text_to(to=PERSON))
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": PERSON, "wa_id": PERSON[1:]}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.")
    assert message["message_status"] == "accepted"


async def test_send_to_a_bsuid_answers_with_its_user_id_and_no_wa_id() -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=text_to(recipient=BSUID))
    assert response.json()["contacts"] == [{"input": BSUID, "user_id": BSUID}]


async def test_send_to_a_parent_bsuid_answers_with_the_user_id_and_the_parent() -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=text_to(recipient=PARENT))
    [contact] = response.json()["contacts"]
    assert contact["input"] == contact["parent_user_id"] == PARENT
    assert contact["user_id"].startswith("NO.") and "ENT" not in contact["user_id"]


async def test_phone_number_takes_precedence_over_a_bsuid_given_with_it() -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=text_to(to=PERSON, recipient=BSUID))
        stats = await stats_of(client)
    assert response.json()["contacts"] == [{"input": PERSON, "wa_id": PERSON[1:]}]
    assert stats["destinations"] == {PERSON: 1}


async def test_each_send_gets_a_new_wamid() -> None:
    async with meta_client() as client:
        answers = [(await client.post(PATH, json=text_to(to=PERSON))).json() for _ in range(3)]
    assert len({answer["messages"][0]["id"] for answer in answers}) == 3


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic ZGVtbzpkZW1v"}],
    ids=["missing", "wrong-token", "basic"],
)
async def test_send_without_the_bearer_token_is_refused_with_190(headers: dict[str, str]) -> None:
    async with meta_client() as client:
        client.headers.pop("Authorization")
        response = await client.post(PATH, json=text_to(to=PERSON), headers=headers)
        stats = await stats_of(client)
    assert response.status_code == 401
    assert graph_error(response)["code"] == 190
    assert stats["accepted_messages"] == 0


async def test_send_from_a_phone_number_id_not_configured_is_refused_with_100_33() -> None:
    async with meta_client() as client:
        response = await client.post("/v23.0/999/messages", json=text_to(to=PERSON))
    assert response.status_code == 400
    error = graph_error(response)
    assert (error["code"], error["error_subcode"]) == (100, 33)


async def test_path_without_an_api_version_is_refused() -> None:
    async with meta_client() as client:
        response = await client.post(f"/latest/{NUMBER_ID}/messages", json=text_to(to=PERSON))
    assert response.status_code == 400
    assert graph_error(response)["code"] == 100


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": PERSON, "type": "text", "text": {"body": "x"}}, "messaging_product"),
        ({**text_to(), "recipient_type": "group"}, "recipient_type"),
        (text_to(), "to"),
        (text_to(to="hello"), "to"),
        (text_to(recipient="+4791234567"), "recipient"),
        ({**text_to(to=PERSON), "type": "fax"}, "type"),
        ({**text_to(to=PERSON), "text": {}}, "text.body"),
        ({**text_to(to=PERSON), "type": "image", "image": {}}, "image"),
        ({**template_to(), "template": {"name": "hello"}}, "template.language"),
        # Meta's reference: every contact has name.formatted_name (LINK's is optional).
        (contacts_to([{"phones": []}]), "contacts[0].name"),
        (contacts_to([{"name": {"formattedName": "J S"}}]), "contacts[0].name.formatted_name"),
        ({**text_to(to=PERSON), "biz_opaque_callback_data": 7}, "biz_opaque_callback_data"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_send_failing_the_schema_is_refused_with_100_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=body)
    assert response.status_code == 400
    error = graph_error(response)
    assert error["code"] == 100
    assert field in error["error_data"]["details"]


async def test_contacts_send_naming_each_contact_by_formatted_name_is_accepted() -> None:
    body = contacts_to([{"name": {"formatted_name": "J S"}, "phones": [{"phone": "+4791234567"}]}])
    async with meta_client() as client:
        response = await client.post(PATH, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["messages"][0]["message_status"] == "accepted"


async def test_body_that_is_not_json_is_refused_with_100() -> None:
    async with meta_client() as client:
        response = await client.post(PATH, content=b"{nope")
    assert response.status_code == 400
    assert graph_error(response)["code"] == 100


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (template_to(name="no_such_template"), 404, 132001),
        (template_to(parameters=2), 400, 132000),
        (login_code_to(recipient=BSUID), 400, 131062),
    ],
    ids=["unknown-template", "parameter-mismatch", "authentication-template-to-bsuid"],
)
async def test_template_errors_answer_the_send(
    body: dict[str, Any], status: int, code: int
) -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=body)
        stats = await stats_of(client)
    assert response.status_code == status
    assert graph_error(response)["code"] == code
    assert stats["rejected_requests"] == {str(code): 1}
    assert stats["accepted_messages"] == 0


async def test_authentication_template_to_a_phone_number_is_accepted() -> None:
    async with meta_client() as client:
        response = await client.post(PATH, json=login_code_to(to=PERSON))
    assert response.status_code == 200, response.text


def _at_start_of_a_second() -> None:
    """Wait for a fresh second, so a burst is counted in one."""
    time.sleep(1 - time.time() % 1 + 0.01)


async def test_sends_over_the_numbers_level_in_a_second_are_refused_with_130429() -> None:
    async with meta_client(meta_pair_burst=0) as client:
        _at_start_of_a_second()
        answers = [await client.post(PATH, json=text_to(to=f"+47912{n:05d}")) for n in range(85)]
        stats = await stats_of(client)
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 80  # STANDARD: 80 messages a second (seed 004, Meta's reference)
    refused = [a for a in answers if a.status_code != 200]
    assert all(graph_error(a)["code"] == 130429 for a in refused)
    assert stats["max_per_second"] == {"+4790000000": 80}
    assert stats["rejected_requests"] == {"130429": 5}


async def test_without_level_enforcement_sends_over_the_level_are_taken_and_counted() -> None:
    async with meta_client(enforce_level=False, meta_pair_burst=0) as client:
        _at_start_of_a_second()
        answers = [await client.post(PATH, json=text_to(to=f"+47912{n:05d}")) for n in range(82)]
        stats = await stats_of(client)
    assert {a.status_code for a in answers} == {200}
    assert stats["excess_over_level"] == {"+4790000000": 2}


async def test_a_high_level_number_takes_more_than_80_a_second() -> None:
    async with meta_client(levels={"+4790000000": "HIGH"}, meta_pair_burst=0) as client:
        _at_start_of_a_second()
        answers = [await client.post(PATH, json=text_to(to=f"+47912{n:05d}")) for n in range(90)]
    assert {a.status_code for a in answers} == {200}


async def test_a_number_also_in_the_business_app_takes_20_a_second_whatever_its_level() -> None:
    settings = {"meta_biz_app_numbers": [NUMBER_ID], "levels": {"+4790000000": "HIGH"}}
    async with meta_client(meta_pair_burst=0, **settings) as client:
        _at_start_of_a_second()
        answers = [await client.post(PATH, json=text_to(to=f"+47912{n:05d}")) for n in range(25)]
        fields = (await client.get(f"/v23.0/{NUMBER_ID}?fields=is_on_biz_app,throughput")).json()
    assert [a.status_code for a in answers].count(200) == 20
    assert fields == {"id": NUMBER_ID, "is_on_biz_app": True, "throughput": {"level": "HIGH"}}


async def test_more_sends_to_one_user_than_the_pair_limit_are_refused_with_131056() -> None:
    user_id, _ = derive_bsuids(PERSON)
    async with meta_client(meta_pair_burst=2, meta_pair_interval_ms=60_000) as client:
        first = await client.post(PATH, json=text_to(to=PERSON))
        second = await client.post(PATH, json=text_to(recipient=user_id))  # the same person
        third = await client.post(PATH, json=text_to(to=PERSON))
        other = await client.post(PATH, json=text_to(to="+4791234568"))
        stats = await stats_of(client)
    assert (first.status_code, second.status_code, other.status_code) == (200, 200, 200)
    assert third.status_code == 400
    assert graph_error(third)["code"] == 131056
    assert stats["users"] == {PERSON: 2, "+4791234568": 1}


async def test_the_pair_limit_refills_with_time() -> None:
    async with meta_client(meta_pair_burst=1, meta_pair_interval_ms=50) as client:
        first = await client.post(PATH, json=text_to(to=PERSON))
        time.sleep(0.06)
        second = await client.post(PATH, json=text_to(to=PERSON))
    assert (first.status_code, second.status_code) == (200, 200)


async def test_a_paced_template_is_answered_held_for_quality_assessment() -> None:
    async with meta_client(meta_paced_templates=["hello"]) as client:
        held = await client.post(PATH, json=template_to())
        text = await client.post(PATH, json=text_to(to=PERSON))
        stats = await stats_of(client)
    assert held.json()["messages"][0]["message_status"] == "held_for_quality_assessment"
    assert text.json()["messages"][0]["message_status"] == "accepted"
    assert stats["meta"] == {"held": 1}


async def test_hold_rate_one_holds_every_template_send() -> None:
    async with meta_client(meta_hold_rate=1.0) as client:
        answers = [await client.post(PATH, json=template_to(to=f"+4791{n:06d}")) for n in range(3)]
    assert {a.json()["messages"][0]["message_status"] for a in answers} == {
        "held_for_quality_assessment"
    }


async def test_server_error_rate_answers_500_and_takes_nothing() -> None:
    async with meta_client(error_rate=1.0) as client:
        response = await client.post(PATH, json=text_to(to=PERSON))
        stats = await stats_of(client)
    assert response.status_code == 500
    assert graph_error(response)["code"] == 131000
    assert stats["accepted_messages"] == 0


async def test_recorded_sends_keep_the_phone_number_id_and_body() -> None:
    body = {**text_to(to=PERSON), "biz_opaque_callback_data": "batch-1"}
    async with meta_client(record_requests=True) as client:
        await client.post(PATH, json=body)
        recorded = (await client.get("/_simulator/meta/requests")).json()
        receipts = (await client.get("/_simulator/receipts")).json()
        stats = await stats_of(client)
        await client.post("/_simulator/reset")
        after_reset = (await client.get("/_simulator/meta/requests")).json()
    assert recorded == [{"phone_number_id": NUMBER_ID, "body": body}]
    assert [count for _, count in receipts] == [1]
    assert stats["ref_ids"] == {"batch-1": 1}
    assert not [s for s in after_reset if s[1] > 0.04]  # forgotten


async def test_link_routes_are_still_served_beside_the_meta_ones() -> None:
    async with meta_client() as client:
        health = await client.get("/healthz")
        stats = await client.get("/_simulator/stats")
    assert health.status_code == stats.status_code == 200


async def test_a_stall_of_the_loop_is_noted_when_requests_are_recorded() -> None:
    """A benchmark tells a burst of stamps from a burst of requests by the simulator's
    own stalls: a loop held past the watch's tick is noted with its length."""
    async with meta_client(record_requests=True) as client:
        await asyncio.sleep(0.01)  # the watch is running
        time.sleep(0.05)  # the loop is held, as a starved process's would be
        await asyncio.sleep(0.01)
        stalls = (await client.get("/_simulator/stalls")).json()
        await client.post("/_simulator/reset")
        after_reset = (await client.get("/_simulator/stalls")).json()
    held = [(ended, seconds) for ended, seconds in stalls if 0.04 < seconds < 1.0]
    assert len(held) == 1  # (a busy machine may add shorter ones)
    assert abs(held[0][0] - time.time()) < 5
    assert not [s for s in after_reset if s[1] > 0.04]  # forgotten
