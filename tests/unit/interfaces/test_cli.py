from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dispatcher.errors import CampaignSpecError
from dispatcher.interfaces import terminal
from dispatcher.interfaces.cli import app
from dispatcher.interfaces.running import exit_code
from dispatcher.interfaces.terminal import ExitCode, friendly
from dispatcher.operations.progress import Progress
from tests.conftest import FUZZ_CASES, ROOT, copy_campaign

runner = CliRunner()


def test_validate_accepts_the_example_campaign_and_lists_what_it_checked() -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "campaigns" / "example")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "banner.png: image/png" in result.output


def test_validate_names_a_column_the_message_needs_but_the_csv_lacks(tmp_path: Path) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("{store}", "{shop}"))
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "recipients[0]" in result.output and "no column shop" in result.output
    assert "Traceback" not in result.output


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_schema_is_json_whose_references_all_resolve() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert {"name", "sender", "message", "recipients"} <= set(document["properties"])
    found = refs(document)
    assert found, "the message schema is referenced, not inlined"
    for ref in found:
        assert resolve(document, ref) is not None


# -- what a person sees: texts verbatim, exit codes, help ---------------------------------

# Printable text: what Rich would draw differently (control characters, tabs) is not
# the question here, markup and emoji codes are.
visible_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1
)


@settings(max_examples=300, deadline=None)
@given(path=visible_text, field=visible_text, message=visible_text)
def test_spec_errors_show_user_text_verbatim_whatever_brackets_it_holds(
    path: str, field: str, message: str
) -> None:
    FUZZ_CASES["cli error text"] += 1

    @friendly
    def refuse() -> None:
        raise CampaignSpecError(path, [(field, message)])

    with terminal.console.capture() as captured, pytest.raises(typer.Exit) as stopped:
        refuse()
    assert stopped.value.exit_code == ExitCode.REFUSED
    assert captured.get() == (f"Campaign spec error in {path}:\n  {field}: {message}\n")


def test_a_recipients_file_named_with_brackets_is_named_as_it_is(tmp_path: Path) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    (folder / "recipients.csv").rename(folder / "customers [final].csv")
    spec = folder / "campaign.yaml"
    spec.write_text(
        spec.read_text()
        .replace("recipients: recipients.csv", 'recipients: "customers [final].csv"')
        .replace("{store}", "{shop}")
    )
    result = runner.invoke(app, ["validate", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == ExitCode.REFUSED
    assert "customers [final].csv" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_key_that_looks_like_markup_is_reported_not_raised(tmp_path: Path) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + '"[/note]": 1\nname2: ":fire: [bold]x"\n')
    result = runner.invoke(app, ["validate", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == ExitCode.REFUSED, result.output
    assert "[/note]" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_help_shows_options_without_type_noise_or_source_markup() -> None:
    for command in ([], ["run"], ["pause"], ["status"], ["delete"]):
        shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
        assert shown.exit_code == 0, shown.output
        assert "<bool>" not in shown.output and "``" not in shown.output
    assert "--again" in runner.invoke(app, ["run", "--help"]).output


def outcome(state: str = "completed", messages: int = 10, submitted: int = 10,
            **by_status: int) -> Progress:  # fmt: skip
    return Progress(
        campaign_id=1, name="n", state=state, error=None, level=None, rate_per_second=None,
        loaded=messages, rejected=0, duplicates=0, rejects_path=None, messages=messages,
        submitted=submitted, sent=0, delivered=0, read=0, failed=0, unsettled=0,
        awaiting_resend=0, expired=0, in_doubt_batches=0, by_status=by_status, failures={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (outcome(read=8, delivered=2), ExitCode.OK),
        (outcome(read=9, unknown=1), ExitCode.OK),  # LINK took it; no later report
        (outcome(read=9, failed=1), ExitCode.SOME_FAILED),
        (outcome(read=9, expired=1), ExitCode.SOME_FAILED),
        (outcome(state="cancelled", read=4, cancelled=6), ExitCode.SOME_FAILED),
        (outcome(failed=10), ExitCode.NOBODY_SENT),
        (outcome(messages=0, submitted=0), ExitCode.NOBODY_SENT),  # every row rejected
        (outcome(state="failed", submitted=0, pending=10), ExitCode.REFUSED),
        # failed after requests whose answers never came, reports then told of deliveries
        (outcome(state="failed", submitted=0, delivered=4, failed=6), ExitCode.SOME_FAILED),
        (outcome(state="previewed", submitted=0, pending=10), ExitCode.OK),
    ],
)
def test_a_run_exits_with_what_became_of_its_people(final: Progress, code: ExitCode) -> None:
    assert exit_code(final) is code
