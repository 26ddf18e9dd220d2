from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.campaign import load_campaign
from dispatcher.errors import CampaignSpecError

ROOT = Path(__file__).resolve().parents[2]

VALID = """
name: Test
sender: {source: "+4790000000"}
message:
  type: template
  template:
    name: hello
    language: en
    header: {image: banner.png}
    body: ["{first_name}", "fixed"]
recipients: people.csv
"""


def write_campaign(
    folder: Path, spec: str, *, csv: str = "phone,first_name\n+4791234567,Ada\n"
) -> Path:
    (folder / "campaign.yaml").write_text(spec, encoding="utf-8")
    (folder / "people.csv").write_text(csv, encoding="utf-8")
    (folder / "banner.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    return folder


def problems_of(folder: Path) -> dict[str, str]:
    with pytest.raises(CampaignSpecError) as caught:
        load_campaign(folder)
    return dict(caught.value.problems)


def test_the_example_campaign_is_valid() -> None:
    loaded = load_campaign(ROOT / "campaigns" / "example")
    assert loaded.spec.sender.source == "+4790000000"
    assert loaded.media_file() == (ROOT / "campaigns" / "example" / "banner.png").resolve()
    assert loaded.spec.placeholders() == {"store"}


def test_a_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    loaded = load_campaign(write_campaign(tmp_path, VALID))
    assert loaded.spec.batch_size == 50
    assert loaded.spec.priority == "NORMAL"
    assert loaded.spec.recipients == ["people.csv"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("name: hello", "name: ''"), "message.template.name"),
        (('source: "+4790000000"', 'source: "not a number"'), "sender.source"),
        (
            ("header: {image: banner.png}", "header: {image: banner.png, text: hi}"),
            "message.template.header",
        ),
        (("type: template", "type: carrier_pigeon"), "message"),
        (("recipients: people.csv", "recipients: people.csv\nbatch_size: 0"), "batch_size"),
        (("recipients: people.csv", "recipients: people.csv\npriority: URGENT"), "priority"),
        (("recipients: people.csv", "recipients: people.csv\ncolour: blue"), "colour"),
    ],
)
def test_an_invalid_spec_names_the_field(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    spec = VALID.replace(*change)
    assert spec != VALID
    assert field in problems_of(write_campaign(tmp_path, spec))


def test_a_missing_recipients_file_is_named(tmp_path: Path) -> None:
    write_campaign(tmp_path, VALID.replace("people.csv", "nobody.csv"))
    assert "file not found" in problems_of(tmp_path)["recipients[0]"]


def test_a_missing_media_file_is_named(tmp_path: Path) -> None:
    write_campaign(tmp_path, VALID.replace("banner.png", "missing.png"))
    assert "media file not found" in problems_of(tmp_path)["message.template.header"]


def test_broken_yaml_is_a_syntax_error_not_a_traceback(tmp_path: Path) -> None:
    write_campaign(tmp_path, "name: [unclosed")
    assert "(syntax)" in problems_of(tmp_path)


def test_a_toml_spec_works_too(tmp_path: Path) -> None:
    write_campaign(tmp_path, "")
    (tmp_path / "campaign.yaml").unlink()
    (tmp_path / "campaign.toml").write_text(
        'name = "T"\nrecipients = "people.csv"\n[sender]\nsource = "+4790000000"\n'
        '[message]\ntype = "text"\ntext = "Hi {first_name}"\n',
        encoding="utf-8",
    )
    assert load_campaign(tmp_path).spec.placeholders() == {"first_name"}
