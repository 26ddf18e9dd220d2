from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dispatcher.cli import app
from tests.conftest import ROOT

runner = CliRunner()


def test_validate_accepts_the_example_campaign_and_lists_what_it_checked() -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "campaigns" / "example")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "banner.png: image/png" in result.output


def test_validate_names_a_column_the_message_needs_but_the_csv_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "example"
    shutil.copytree(
        ROOT / "campaigns" / "example", folder, ignore=shutil.ignore_patterns("reports")
    )
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
