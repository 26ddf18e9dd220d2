"""Meta's Cloud API client against the project's simulator over real HTTP: the bodies it
takes, the answers it reads (seed 000's contacts, seed 002's pacing holds), the Graph
errors it maps, and the fan-out's sender under throughput and pair limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.errors import (
    LinkAuthError,
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.providers.base import Level
from dispatcher.providers.meta.client import MetaClient, MetaCredentials
from dispatcher.providers.meta.models import MetaAnswer, MetaRequest

pytestmark = pytest.mark.integration

NUMBER_ID = "106540352242922"  # the simulator's default number, +4790000000
WABA_ID = "102290129340398"
PERSON = "+4791234567"
BSUID = "NO.12345678901234567890"
PARENT_BSUID = "NO.ENT.12345678901234567890"
HELLO: dict[str, Any] = {
    "type": "template",
    "template": {
        "name": "hello",
        "language": {"code": "en"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Kari"}]}],
    },
}
LOGIN_CODE: dict[str, Any] = {
    "type": "template",
    "template": {
        "name": "login_code",
        "language": {"code": "en"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "123456"}]},
            {"type": "button", "subType": "url", "index": 0,
             "parameters": [{"type": "text", "text": "123456"}]},
        ],
    },
}  # fmt: skip
SPEC = CampaignSpec.model_validate(
    {
        "name": "meta",
        "sender": {"source": "+4790000000", "provider": "meta", "phone_number_id": NUMBER_ID},
        "message": HELLO,
        "recipients": ["r.csv"],
    }
)


def meta_client(url: str, token: str = "demo-token") -> MetaClient:
    return MetaClient(MetaCredentials(url, token, "v23.0", WABA_ID), timeout_seconds=2)


@pytest.fixture()
def meta(simulator: str) -> Iterator[MetaClient]:
    with meta_client(simulator) as client:
        yield client


def request(
    client: MetaClient, destination: str = PERSON, message: dict[str, Any] | None = None,
    batch: str = "c1-b0000001",
) -> MetaRequest:  # fmt: skip
    return client.request(SPEC, batch, [destination], [message or HELLO], valid_until=None,
                          event_report_gate=None, campaign_id=1)  # fmt: skip


def recorded(url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{url}/_simulator/meta/requests").json()
    return found


def send_all(client: MetaClient, requests: list[MetaRequest]) -> list[MetaAnswer | LinkError]:
    async def run() -> list[MetaAnswer | LinkError]:
        sender = client.concurrent(50)
        try:
            return await sender.send_all(requests)
        finally:
            await sender.aclose()

    return asyncio.run(run())


def test_a_template_is_taken_as_sent_and_answered_with_its_wamid(
    simulator: str, meta: MetaClient
) -> None:
    sent = request(meta)

    answer = meta.send(sent)

    assert answer.message_ids[0].startswith("wamid.")
    assert answer.held_for_quality is False and answer.message_status == "accepted"
    assert answer.named_identifiers == (PERSON[1:], None, None)  # seed 000: wa_id, no "+"
    [taken] = recorded(simulator)
    assert taken == {"phone_number_id": NUMBER_ID, "body": sent.to_wire()}
    assert taken["body"]["to"] == PERSON
    assert taken["body"]["biz_opaque_callback_data"] == "c1-b0000001"


@pytest.mark.parametrize("destination", [BSUID, PARENT_BSUID])
def test_a_bsuid_goes_as_recipient_and_the_answer_names_the_user(
    simulator: str, meta: MetaClient, destination: str
) -> None:
    answer = meta.send(request(meta, destination))

    wa_id, user_id, parent = answer.named_identifiers
    assert wa_id is None and user_id is not None and user_id.startswith("NO.")
    assert (parent is not None) is (destination == PARENT_BSUID)
    [taken] = recorded(simulator)
    assert taken["body"]["recipient"] == destination and "to" not in taken["body"]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "text", "previewUrl": True, "text": {"body": "https://example.com"}},
        {"type": "location", "location": {"longitude": 10.75, "latitude": 59.91, "name": "Oslo"}},
        {"type": "image", "image": {"link": "https://example.com/a.png", "caption": "A"}},
        {"type": "contacts", "contacts": [{
            "name": {"formattedName": "Kari N", "firstName": "Kari"},
            "phones": [{"phone": "+4791234567", "waId": "4791234567"}]}]},
        {"type": "interactive", "interactive": {
            "type": "button", "body": {"text": "Pick"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}},
        LOGIN_CODE,
    ],
    ids=["text", "location", "image", "contacts", "interactive", "url-button-template"],
)  # fmt: skip
def test_every_kind_of_message_is_accepted_in_meta_s_form(
    simulator: str, meta: MetaClient, message: dict[str, Any]
) -> None:
    answer = meta.send(request(meta, message=message))

    assert answer.message_ids[0].startswith("wamid.")
    [taken] = recorded(simulator)
    assert taken["body"]["type"] == message["type"]


@pytest.mark.parametrize("simulator", [{"meta_paced_templates": ["hello"]}], indirect=True)
def test_a_template_held_for_pacing_is_answered_as_held(meta: MetaClient) -> None:
    answer = meta.send(request(meta))

    assert answer.held_for_quality is True
    assert answer.message_status == "held_for_quality_assessment"


@pytest.mark.parametrize(
    ("message", "destination", "code"),
    [
        ({**HELLO, "template": {**HELLO["template"], "name": "nope"}}, PERSON, 132001),
        ({**HELLO, "template": {**HELLO["template"], "components": []}}, PERSON, 132000),
        (LOGIN_CODE, BSUID, 131062),  # seed 000: no BSUID for authentication templates
    ],
)
def test_a_refused_template_is_a_request_error_with_whatsapp_s_code(
    meta: MetaClient, message: dict[str, Any], destination: str, code: int
) -> None:
    with pytest.raises(LinkRequestError) as raised:
        meta.send(request(meta, destination, message))

    assert raised.value.result_code == code
    assert f"(#{code})" in str(raised.value) and "fbtrace_id" in str(raised.value)


def test_a_wrong_token_is_an_auth_error(simulator: str) -> None:
    with meta_client(simulator, token="wrong") as client, pytest.raises(LinkAuthError) as raised:
        client.send(request(client))

    assert (raised.value.result_code, raised.value.http_status) == (190, 401)


def test_an_unknown_phone_number_id_is_a_request_error(simulator: str, meta: MetaClient) -> None:
    other = CampaignSpec.model_validate(
        {**SPEC.model_dump(mode="json", exclude_unset=True),
         "sender": {"source": "+4790000000", "provider": "meta", "phone_number_id": "1"}}
    )  # fmt: skip
    sent = meta.request(other, "b", [PERSON], [HELLO], valid_until=None,
                        event_report_gate=None, campaign_id=1)  # fmt: skip

    with pytest.raises(LinkRequestError) as raised:
        meta.send(sent)

    assert raised.value.result_code == 100
    assert recorded(simulator) == []


@pytest.mark.parametrize("simulator", [{"error_rate": 1.0}], indirect=True)
def test_meta_s_server_error_is_transient_because_it_sent_nothing(meta: MetaClient) -> None:
    with pytest.raises(LinkTransientError) as raised:
        meta.send(request(meta))

    assert (raised.value.result_code, raised.value.http_status) == (131000, 500)


@pytest.mark.parametrize("simulator", [{"drop_rate": 1.0}], indirect=True)
def test_an_answer_that_never_comes_leaves_the_send_in_doubt(meta: MetaClient) -> None:
    with pytest.raises(LinkInDoubtError):
        meta.send(request(meta))
    [result] = send_all(meta, [request(meta)])
    assert isinstance(result, LinkInDoubtError)


def test_the_fan_out_sender_sends_many_people_at_once(simulator: str, meta: MetaClient) -> None:
    requests = [request(meta, f"+47912{n:05d}", batch=f"c1-b{n:07d}") for n in range(40)]

    results = send_all(meta, requests)

    assert all(isinstance(r, MetaAnswer) for r in results), results
    ids = [r.message_ids[0] for r in results if isinstance(r, MetaAnswer)]
    assert len(set(ids)) == 40
    taken = recorded(simulator)
    assert sorted(t["body"]["biz_opaque_callback_data"] for t in taken) == sorted(
        r.ref_id for r in requests
    )


@pytest.mark.parametrize("simulator", [{"level": "STANDARD"}], indirect=True)
def test_sends_over_the_number_s_throughput_are_refused_with_130429(meta: MetaClient) -> None:
    # 200 at once: whichever second they fall in, one second carries more than 80.
    requests = [request(meta, f"+47913{n:05d}", batch=f"c1-b{n:07d}") for n in range(200)]

    results = send_all(meta, requests)

    refused = [r for r in results if isinstance(r, LinkError)]
    assert refused and all(
        isinstance(r, LinkTransientError) and r.result_code == 130429 for r in refused
    )
    assert sum(isinstance(r, MetaAnswer) for r in results) >= Level.STANDARD.messages_per_second


@pytest.mark.parametrize(
    "simulator", [{"meta_pair_burst": 2, "meta_pair_interval_ms": 60_000}], indirect=True
)
def test_too_many_sends_to_one_person_are_refused_with_131056(meta: MetaClient) -> None:
    meta.send(request(meta))
    meta.send(request(meta))

    with pytest.raises(LinkTransientError) as raised:
        meta.send(request(meta))

    assert raised.value.result_code == 131056
    assert isinstance(meta.send(request(meta, "+4791234568")), MetaAnswer)  # others go on


@pytest.mark.parametrize("simulator", [{"level": "HIGH", "quality_rating": "YELLOW"}],
                         indirect=True)  # fmt: skip
def test_sender_info_comes_from_the_phone_number_s_fields(meta: MetaClient) -> None:
    info = meta.sender_info(NUMBER_ID)

    assert (info.level, info.quality, info.blocked) == (Level.HIGH, "YELLOW", None)
    assert info.tier is not None


@pytest.mark.parametrize("simulator", [{"meta_biz_app_numbers": [NUMBER_ID]}], indirect=True)
def test_a_number_also_in_the_business_app_is_capped_at_20_a_second(meta: MetaClient) -> None:
    assert meta.sender_info(NUMBER_ID).messages_per_second == 20


def test_a_cloud_api_only_number_has_no_cap_below_its_level(meta: MetaClient) -> None:
    assert meta.sender_info(NUMBER_ID).messages_per_second is None


def test_the_waba_s_templates_are_listed(meta: MetaClient) -> None:
    found = {(t.name, t.language): t for t in meta.templates(NUMBER_ID)}

    assert found[("hello", "en")].body_parameters == 1
    assert found[("login_code", "en")].authentication


def test_media_uploads_to_the_number_and_is_sent_by_its_id(
    simulator: str, meta: MetaClient
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64

    uploaded = meta.upload_media(
        source=NUMBER_ID, content_type="image/png", filename="banner.png", data=png
    )
    answer = meta.send(request(meta, message={"type": "image", "image": {"id": uploaded.media_id}}))

    assert uploaded.simulator_instance == meta.simulator_instance() is not None
    assert answer.message_ids[0].startswith("wamid.")
    [taken] = recorded(simulator)
    assert taken["body"]["image"] == {"id": uploaded.media_id}
