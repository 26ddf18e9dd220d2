"""Spec keys for the MessageRequest's optional fields (seed 004 'MessageRequest')."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.campaigns.spec import load_campaign
from tests.unit.campaigns.test_spec import VALID, problems_of, write_campaign

SENDER = 'sender: {source: "+4790000000"}'


def test_platform_fields_and_relative_validity_load(tmp_path: Path) -> None:
    spec = VALID.replace(
        SENDER,
        'sender: {source: "+4790000000", platform_service_type: T, platform_service_id: S, '
        "platform_transaction_id: X}",
    )
    loaded = load_campaign(write_campaign(tmp_path, spec + "validity_as: relative\n"))
    assert loaded.spec.sender.platform_service == ("T", "S", "X")
    assert loaded.spec.validity_as == "relative"
    assert load_campaign(write_campaign(tmp_path, VALID)).spec.validity_as == "absolute"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ((SENDER, 'sender: {source: "+4790000000", platform_service_id: ""}'),
         "sender.platform_service_id"),
        ((SENDER, 'sender: {source: "+4790000000", platform_service_type: "a\\tb"}'),
         "sender.platform_service_type"),
        ((SENDER, 'sender: {source: "+4790000000", platform_transaction_id: "' + "x" * 256 + '"}'),
         "sender.platform_transaction_id"),
        (("recipients: people.csv", "recipients: people.csv\nvalidity_as: sometimes"),
         "validity_as"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_field(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    spec = VALID.replace(*change)
    assert spec != VALID
    assert field in problems_of(write_campaign(tmp_path, spec))
