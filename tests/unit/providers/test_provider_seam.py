"""The Provider seam: LINK satisfies the protocols the stages speak, and the registry
finds it from the settings and reads its callbacks into provider-neutral reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.audience import book
from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.errors import ConfigurationError
from dispatcher.providers import (
    WEBHOOKS,
    InvalidReport,
    Level,
    Provider,
    SenderInfo,
    offline_provider,
    parse_callback,
    provider_from_settings,
)
from dispatcher.providers.link import LinkClient, LinkCredentials, PhoneNumberInfo
from dispatcher.settings import Settings
from dispatcher.status import MessageStatus

CREDS = LinkCredentials("https://link.test/whatsapp-message", "user", "pw", "PID", "42")
SPEC = {
    "name": "Seam",
    "sender": {"source": "+4790000000"},
    "message": {"type": "text", "text": "hi"},
    "recipients": "people.csv",
}


def test_the_link_client_is_a_provider() -> None:
    provider: Provider = LinkClient(CREDS)
    try:
        assert isinstance(provider, Provider)
        assert (provider.name, provider.account) == ("LINK", CREDS.account)
    finally:
        provider.close()


def test_the_registry_builds_the_link_provider_from_link_settings() -> None:
    settings = Settings(
        link_base_url="https://link.test/whatsapp-message",
        link_username="user",
        link_password="pw",
        link_platform_id="PID",
        link_platform_partner_id="42",
    )
    providers = provider_from_settings(settings)
    try:
        link = providers.pick("link")
        assert isinstance(link, LinkClient)
        assert link.credentials == CREDS
        with pytest.raises(ConfigurationError, match="META_BASE_URL"):
            providers.pick("meta")  # a deployment with LINK only
    finally:
        providers.close()


def test_settings_without_a_provider_url_name_the_variable_to_set() -> None:
    with pytest.raises(ConfigurationError, match="LINK_BASE_URL"):
        provider_from_settings(Settings(link_base_url=None))


def test_the_offline_provider_reaches_nobody() -> None:
    provider = offline_provider()
    try:
        assert provider.simulator_instance() is None
    finally:
        provider.close()


@pytest.mark.parametrize(
    ("sender", "platform"),
    [
        ({}, ("PID", "42")),
        ({"platform_id": "P2", "platform_partner_id": "7"}, ("P2", "7")),
    ],
)
def test_a_request_carries_the_batch_the_spec_and_the_account(
    sender: dict[str, str], platform: tuple[str, str]
) -> None:
    spec = CampaignSpec.model_validate(SPEC | {"sender": {"source": "+4790000000", **sender}})
    until = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    with LinkClient(CREDS) as client:
        request = client.request(
            spec, "b1", ["+4791234567"], [{"type": "text"}], valid_until=until,
            event_report_gate="gate", campaign_id=7,
        )  # fmt: skip
    wire = request.to_wire()
    assert (wire["platformId"], wire["platformPartnerId"]) == platform
    assert (wire["refId"], wire["source"], wire["eventReportGates"]) == ("b1", "+4790000000",
                                                                         ["gate"])  # fmt: skip
    assert (wire["priority"], wire["absoluteValidityTime"]) == ("NORMAL", "2026-03-03T12:00:00Z")
    assert (request.ref_id, request.destinations) == ("b1", ["+4791234567"])
    assert wire["customParameters"] == {"campaignId": "7", "batchId": "b1"}


def test_a_link_status_callback_becomes_a_provider_neutral_report() -> None:
    body = {
        "messageId": "m1",
        "refId": "b1",
        "resultCode": 112003,
        "customParameters": {"destination": "4791234567", "whatsappUserId": "NO.1349"},
    }
    [report] = parse_callback(WEBHOOKS["/webhooks/link/dlr"], json.dumps(body).encode()).statuses
    assert (report.message_id, report.ref_id, report.result_code) == ("m1", "b1", 112003)
    assert report.message_status is MessageStatus.DELIVERED
    assert not report.is_request_failure
    assert book.identifiers_in(report.named_identifiers) == ("+4791234567", "NO.1349")


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"resultDescription": "(#131049) not delivered"}, 131049),
        ({"customParameters": {"metaErrorDetails": "(#131026) undeliverable"}}, 131026),
        ({"resultDescription": "(#100)Invalid parameter ",
          "customParameters": {"metaErrorDetails": "Either one of media ID or link"}}, 100),
        # A failed request's code is read from its resultDescription alone.
        ({"messageType": "request", "customParameters": {"metaErrorDetails": "(#4) x"}}, None),
    ],
)  # fmt: skip
def test_a_failure_report_gives_whatsapp_s_error_code(
    extra: dict[str, Any], code: int | None
) -> None:
    body = {"messageId": "m1", "refId": "b1", "resultCode": 112403} | extra
    [report] = parse_callback("dlr", json.dumps(body).encode()).statuses
    assert report.message_status is MessageStatus.FAILED
    assert report.whatsapp_error_code == code


def test_a_link_incoming_message_names_its_sender_first_and_gives_the_replies() -> None:
    body = {
        "source": "+4791234567",
        "customParameters": {"whatsappUserId": "NO.1349"},
        "content": {"message": {"text": "STOP", "button": {"text": "No", "payload": "P"}}},
    }
    parsed = parse_callback(WEBHOOKS["/webhooks/link/mo"], json.dumps(body).encode())
    [message] = parsed.incoming
    assert parsed.statuses == ()
    assert book.identifiers_in(message.named_identifiers) == ("+4791234567", "NO.1349")
    assert list(message.replies()) == ["STOP", "No", "P"]


@pytest.mark.parametrize("kind", sorted(set(WEBHOOKS.values())))
def test_every_webhook_path_has_a_parser_that_refuses_what_it_cannot_read(kind: str) -> None:
    with pytest.raises(InvalidReport) as caught:
        parse_callback(kind, b"not json")
    assert "no provider" not in str(caught.value)


def test_a_callback_kind_no_provider_sends_is_invalid() -> None:
    with pytest.raises(InvalidReport, match="no provider sends 'fax' callbacks"):
        parse_callback("fax", b"{}")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"overallHealthStatus": "AVAILABLE", "level": "HIGH",
          "maxDailyConversations": "TIER_10K"}, SenderInfo(Level.HIGH, tier="TIER_10K")),
        ({"overallHealthStatus": "BLOCKED", "errors": [
            {"error_code": 141002, "error_description": "Not approved",
             "possible_solution": "Edit or appeal"}]},
         SenderInfo(blocked="141002 - Not approved - Edit or appeal")),
        ({"numberCanSendMessages": "BLOCKED"}, SenderInfo(blocked="")),
        ({"overallHealthStatus": "LIMITED", "additional_info": ["display name", "quality"]},
         SenderInfo(limited="display name; quality")),
    ],
)  # fmt: skip
def test_link_s_phone_number_information_becomes_sender_information(
    answer: dict[str, Any], expected: SenderInfo
) -> None:
    assert PhoneNumberInfo.model_validate(answer).sender_info() == expected
