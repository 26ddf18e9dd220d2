"""What ``dispatcher validate`` says of a spec or recipients file that is wrong: the
heading names the file at fault, the problem names its fix."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dispatcher.interfaces.cli import app

runner = CliRunner()


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def validate(folder: Path) -> str:
    """The command's output, its lines unwrapped (a problem may be wider than 80)."""
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def heading(output: str) -> str:
    """The first line, spaces dropped: a long path may be wrapped anywhere."""
    return "".join(output.split(":", 1)[0].split())


def test_validate_heads_a_csv_problem_as_a_recipients_file_problem(example_dir: Path) -> None:
    (example_dir / "recipients.csv").write_text("", encoding="utf-8")
    output = validate(example_dir)
    assert heading(output) == f"Recipientsfileproblemin{example_dir / 'recipients.csv'}"
    assert "recipients[0]: recipients.csv: the file is empty" in output
    assert "Campaign spec error" not in output


def test_validate_lists_the_files_columns_and_defaults_for_a_column_the_message_lacks(
    example_dir: Path,
) -> None:
    edit(example_dir / "campaign.yaml", "{store}", "{shop}")
    assert (
        "recipients[0]: recipients.csv has no column shop (the message uses {shop}); its "
        "columns are phone, first_name, store: use one of them in the message, add the "
        "column to the file, or give a value under defaults:"
    ) in validate(example_dir)


def test_validate_lists_the_files_columns_for_a_column_the_columns_mapping_names(
    example_dir: Path,
) -> None:
    edit(example_dir / "campaign.yaml", "batch_size: 50", "batch_size: 50\ncolumns: {phone: Handy}")
    assert (
        "columns.phone: recipients.csv has no column 'Handy'; its columns are phone, "
        "first_name, store: write the one that holds phone numbers as columns.phone"
    ) in validate(example_dir)


def test_validate_says_yaml_read_norway_as_false_and_to_quote_it(example_dir: Path) -> None:
    edit(example_dir / "campaign.yaml", 'default_region: "NO"', "default_region: NO")
    output = validate(example_dir)
    assert heading(output) == f"Campaignspecerrorin{example_dir / 'campaign.yaml'}"
    assert 'default_region: YAML read NO as false (line 28): write it in quotes, "NO"' in output
