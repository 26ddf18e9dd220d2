from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.campaigns.spec import load_campaign
from dispatcher.errors import CampaignSpecError
from tests.conftest import ROOT

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


@pytest.mark.parametrize(
    ("change", "field", "explained"),
    [
        (("recipients: people.csv", "recipients: people.csv\ndefault_region: NO"),
         "default_region", 'YAML read NO as false (line 15): write it in quotes, "NO"'),
        (("name: Test", "name: 2026-12-01"),
         "name", 'YAML read 2026-12-01 as a date (line 2): write it in quotes, "2026-12-01"'),
        (('source: "+4790000000"', "source: +4790000000"),
         "sender.source", 'YAML read +4790000000 as a number (line 3): write it in quotes'),
        (("language: en", "language: no"),
         "message.template.language", 'YAML read no as false (line 8): write it in quotes'),
        (("recipients: people.csv", "recipients: people.csv\ndefaults: {first_name: yes}"),
         "defaults.first_name", "YAML read yes as true (line 15)"),
        (("recipients: people.csv", "recipients: people.csv\ncolumns: {country: off}"),
         "columns.country", "YAML read off as false (line 15)"),
    ],
)  # fmt: skip
def test_a_value_yaml_read_as_another_type_is_named_with_its_line_and_the_quotes_that_fix_it(
    tmp_path: Path, change: tuple[str, str], field: str, explained: str
) -> None:
    spec = VALID.replace(*change)
    assert spec != VALID
    assert problems_of(write_campaign(tmp_path, spec))[field].startswith(explained)


def test_a_value_that_quotes_would_not_fix_keeps_its_own_error(tmp_path: Path) -> None:
    spec = VALID.replace("recipients: people.csv", "recipients: people.csv\nbatch_size: 0")
    assert "greater than or equal to 1" in problems_of(write_campaign(tmp_path, spec))["batch_size"]


@pytest.mark.parametrize(
    ("file_name", "text", "sentence"),
    [
        ("campaign.yaml", "name: [unclosed\nsender: x\n",
         "campaign.yaml line 2, column 7: expected ',' or ']', but got ':' "
         "(in the [...] list from line 1)"),
        ("campaign.yaml", "name: Sale: 50% off\n",
         "campaign.yaml line 1, column 11: mapping values are not allowed here "
         "(a value with ': ' in it needs quotes)"),
        ("campaign.toml", 'name = "T"\ndefault_region = NO\n',
         "campaign.toml line 2, column 18: invalid value"),
    ],
)  # fmt: skip
def test_a_syntax_error_is_one_sentence_naming_the_file_line_and_column(
    tmp_path: Path, file_name: str, text: str, sentence: str
) -> None:
    (tmp_path / file_name).write_text(text, encoding="utf-8")
    assert problems_of(tmp_path)["(syntax)"] == sentence


def test_a_word_that_looks_like_a_date_but_is_none_is_a_syntax_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    write_campaign(tmp_path, VALID.replace("name: Test", "name: 2026-13-01"))
    assert problems_of(tmp_path)["(syntax)"].startswith(
        "campaign.yaml line 2, column 7: 2026-13-01 looks like a date to YAML but is not one"
    )


@pytest.mark.parametrize(
    ("change", "field", "meant"),
    [
        (("recipients: people.csv", "recipients: people.csv\nbatchsize: 10"),
         "batchsize", "batch_size"),
        (('source: "+4790000000"', 'source: "+4790000000", levle: STANDARD'),
         "sender.levle", "level"),
        (("language: en", "langauge: en"), "message.template.langauge", "language"),
        (('text: "{first_name}"', 'txt: "{first_name}"'),
         "message.template.components[1].parameters[0].txt", "text"),
    ],
)  # fmt: skip
def test_an_unknown_key_suggests_the_nearest_known_one_at_its_level(
    tmp_path: Path, change: tuple[str, str], field: str, meant: str
) -> None:
    spec = VALID.replace(*change)
    assert spec != VALID
    problems = problems_of(write_campaign(tmp_path, spec))
    assert problems[field] == f"unknown key; did you mean {meant}?"


def test_an_unknown_key_like_no_known_one_lists_the_keys_at_its_level(tmp_path: Path) -> None:
    spec = VALID.replace('source: "+4790000000"', 'source: "+4790000000", colour: blue')
    assert problems_of(write_campaign(tmp_path, spec))["sender.colour"] == (
        "unknown key; the keys here are ceiling_percent, level, min_quality, "
        "phone_number_id, platform_id, platform_partner_id, platform_service_id, "
        "platform_service_type, platform_transaction_id, provider, source, tier_limit"
    )
