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
    components:
      - type: header
        parameters: [{type: image, image: {file: banner.png}}]
      - type: body
        parameters: [{type: text, text: "{first_name}"}, {type: text, text: fixed}]
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
    assert [ref.file for ref in loaded.media_refs()] == ["banner.png"]
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
        (('source: "+4790000000"', 'source: "+4790000000", level: TURBO'), "sender.level"),
        (("{file: banner.png}", "{file: banner.png, link: 'https://x.test/a.png'}"),
         "message.template.components[0].parameters[0].image"),
        (("type: template", "type: carrier_pigeon"), "message"),
        (("recipients: people.csv", "recipients: people.csv\nbatch_size: 0"), "batch_size"),
        (("recipients: people.csv", "recipients: people.csv\npriority: URGENT"), "priority"),
        (("recipients: people.csv", "recipients: people.csv\ncolour: blue"), "colour"),
        (("    name: hello", "    name: hello\n    colour: blue"), "message.template.colour"),
    ],
)  # fmt: skip
def test_an_invalid_spec_names_the_field(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    spec = VALID.replace(*change)
    assert spec != VALID
    problems = problems_of(write_campaign(tmp_path, spec))
    assert any(path == field or path.startswith(field + ".") for path in problems), problems


def test_a_missing_recipients_file_is_named(tmp_path: Path) -> None:
    write_campaign(tmp_path, VALID.replace("people.csv", "nobody.csv"))
    assert "file not found" in problems_of(tmp_path)["recipients[0]"]


def test_a_missing_media_file_is_named(tmp_path: Path) -> None:
    write_campaign(tmp_path, VALID.replace("file: banner.png", "file: missing.png"))
    field = "message.template.components[0].parameters[0].image.file"
    assert "file not found" in problems_of(tmp_path)[field]


def test_broken_yaml_is_a_syntax_error_not_a_traceback(tmp_path: Path) -> None:
    write_campaign(tmp_path, "name: [unclosed")
    assert "(syntax)" in problems_of(tmp_path)


def test_a_toml_spec_works_too(tmp_path: Path) -> None:
    write_campaign(tmp_path, "")
    (tmp_path / "campaign.yaml").unlink()
    (tmp_path / "campaign.toml").write_text(
        'name = "T"\nrecipients = "people.csv"\n[sender]\nsource = "+4790000000"\n'
        '[message]\ntype = "text"\ntext = {body = "Hi {first_name}"}\n',
        encoding="utf-8",
    )
    assert load_campaign(tmp_path).spec.placeholders() == {"first_name"}
