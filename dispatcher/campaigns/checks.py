"""Checks a campaign can pass before anything is stored or sent (``dispatcher validate``).

Everything here reads local files only: the spec (and its message, with stand-in
values), the header of each recipients file, and every media file against the
documented types and size limits. No database, no LINK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dispatcher.audience.recipients import RecipientsFile, normalise_header
from dispatcher.campaigns.spec import CampaignSpec, LoadedCampaign, load_campaign
from dispatcher.errors import (
    CampaignSpecError,
    DispatcherError,
    RecipientsError,
    RecipientsFileError,
)
from dispatcher.preparation.media import MediaFile, read_media


@dataclass(slots=True)
class Preflight:
    """What the checks found: the campaign, its files and media, ready to show."""

    loaded: LoadedCampaign
    columns: dict[Path, list[str]] = field(default_factory=dict)
    media: list[MediaFile] = field(default_factory=list)


def preflight(path: Path) -> Preflight:
    """Validate spec, recipient headers and media; raise ``CampaignSpecError`` listing all
    (``RecipientsFileError`` when only recipients files are wrong)."""
    loaded = load_campaign(path)
    spec = loaded.spec
    result = Preflight(loaded)
    in_files: dict[Path, list[tuple[str, str]]] = {}
    for index, file in enumerate(loaded.recipient_files()):
        columns, found = _header(index, file, spec)
        if found:
            in_files.setdefault(file, []).extend(found)
        elif columns is not None:
            result.columns[file] = columns
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ref in loaded.media_refs():
        if ref.file in seen:
            continue
        seen.add(ref.file)
        try:
            result.media.append(
                read_media(
                    loaded.resolve(ref.file), ref.kind, template_header=ref.in_template_header
                )
            )
        except DispatcherError as exc:
            problems.append(("message." + ".".join(str(p) for p in ref.path), str(exc)))
    file_problems = [problem for found in in_files.values() for problem in found]
    if problems:
        raise CampaignSpecError(str(loaded.spec_path), problems + file_problems)
    if file_problems:
        where = next(iter(in_files)) if len(in_files) == 1 else loaded.folder
        raise RecipientsFileError(str(where), file_problems)
    return result


# What the column ``columns.<name>`` names holds, as the fix says it.
_HOLDS = {
    "phone": "phone numbers",
    "bsuid": "BSUIDs",
    "parent_bsuid": "parent BSUIDs",
    "country": "countries",
}


def _header(
    index: int, file: Path, spec: CampaignSpec
) -> tuple[list[str] | None, list[tuple[str, str]]]:
    """The file's columns, and what the spec or its message needs that they lack."""
    named = spec.columns.named()
    try:
        with RecipientsFile(file, spec.default_region, spec.columns.names()) as recipients:
            columns = recipients.columns
    except RecipientsError as exc:
        columns = exc.columns or []
        if exc.columns is None or all(normalise_header(c) in columns for c in named.values()):
            # Unreadable, or no recipient column at all: its own words say why.
            return None, [(f"recipients[{index}]", f"{file.name}: {_reason(exc, file)}")]
        # else a column the spec names is not there: said below, with the fix.
    except DispatcherError as exc:
        return None, [(f"recipients[{index}]", f"{file.name}: {_reason(exc, file)}")]
    found: list[tuple[str, str]] = []
    listed = ", ".join(columns) or "(none)"
    for name, column in named.items():
        if normalise_header(column) not in columns:
            found.append(
                (
                    f"columns.{name}",
                    f"{file.name} has no column {column!r}; its columns are {listed}: "
                    f"write the one that holds {_HOLDS[name]} as columns.{name}",
                )
            )
    missing = sorted(spec.placeholders() - set(spec.defaults) - set(columns))
    if missing:
        used = ", ".join(f"{{{name}}}" for name in missing)
        found.append(
            (
                f"recipients[{index}]",
                f"{file.name} has no column {', '.join(missing)} (the message uses {used}); "
                f"its columns are {listed}: use one of them in the message, add the "
                "column to the file, or give a value under defaults:",
            )
        )
    return columns, found


def _reason(exc: DispatcherError, file: Path) -> str:
    return str(exc).removeprefix(f"{file}: ")
