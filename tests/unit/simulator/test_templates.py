"""The simulator's templates: served as LINK lists them, and sends that do not match them
failing as Meta fails them; non-template messages outside the care window likewise."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.simulator.test_simulator import (
    Receiver,
    callback_counts,
    reserve_port,
    send,
    serve,
    simulator_with_receiver,
    template_message,
    text_message,
    wait_until,
)

PROMO_EN = {"name": "promo", "language": "en", "status": "APPROVED", "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Hi {{1}}"}]}  # fmt: skip
BODY_ONE = [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]
BODY_TWO = [{"type": "body", "parameters": [{"type": "text", "text": "A"}] * 2}]


def outcomes(messages: list[dict[str, Any]], **settings: Any) -> list[tuple[int, str]]:
    """Each message's final report (code, description), sent to one person."""
    receiver = Receiver()
    sock = reserve_port()
    with serve(receiver.app, sock), simulator_with_receiver(receiver, sock, **settings) as (c, _):
        (message_id,) = send(c, messages=messages)
        wait_until(lambda: callback_counts(c)["pending"] == 0)
    last = {c["messageIndex"]: c for c in receiver.callbacks if c["messageId"] == message_id}
    return [(last[i]["resultCode"], last[i]["resultDescription"]) for i in range(len(messages))]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"components": BODY_ONE}, (112007, "read")),
        ({"components": BODY_TWO}, (112403, "(#132000) Number of parameters does not match "
                                            "the expected number of params")),
        ({"name": "nope", "components": BODY_ONE},
         (112403, "(#132001) Template name does not exist in the translation")),
        ({"language": {"code": "de"}, "components": BODY_ONE},
         (112403, "(#132001) Template name does not exist in the translation")),
    ],
    ids=["matching", "parameter-count", "unknown-name", "unknown-language"],
)  # fmt: skip
def test_a_template_send_is_judged_against_the_listed_templates(
    template: dict[str, Any], expected: tuple[int, str]
) -> None:
    assert outcomes([template_message(**template)], templates=[PROMO_EN]) == [expected]


def test_a_paused_template_fails_with_132015() -> None:
    paused = {**PROMO_EN, "status": "PAUSED"}
    message = template_message(components=BODY_ONE)
    assert outcomes([message], templates=[paused]) == [(112403, "(#132015) Template is paused")]


def test_text_outside_the_care_window_fails_with_131047_and_a_template_still_goes() -> None:
    found = outcomes([text_message(), template_message()], open_care_windows=["+46709999999"])
    assert found == [(112403, "(#131047) Re-engagement message"), (112007, "read")]


def test_the_template_list_and_one_template_are_served_in_metas_format() -> None:
    receiver, sock = Receiver(), reserve_port()
    with (
        serve(receiver.app, sock),
        simulator_with_receiver(receiver, sock, templates=[PROMO_EN]) as (client, _),
    ):
        path = "/platformId/platform/platformPartnerId/partner/source/+4670000000/templates"
        listed = client.get(path).json()["data"]
        assert [(t["name"], t["language"], t["status"]) for t in listed] == [
            ("promo", "en", "APPROVED")
        ]
        one = client.get(f"{path}/{listed[0]['id']}").json()
        assert one == listed[0]
        assert client.get(path, auth=None).status_code == 401
