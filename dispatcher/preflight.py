"""Checks a campaign can pass before anything is stored or sent (``dispatcher validate``).

Everything here reads local files only: the spec (and its message, with stand-in
values), the header of each recipients file, and every media file against the
documented types and size limits. No database, no LINK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dispatcher.campaign import LoadedCampaign, load_campaign
from dispatcher.errors import CampaignSpecError, DispatcherError
from dispatcher.media import MediaFile, read_media
from dispatcher.recipients import RecipientsFile, normalise_header


@dataclass(slots=True)
class Preflight:
    """What the checks found: the campaign, its files and media, ready to show."""

    loaded: LoadedCampaign
    columns: dict[Path, list[str]] = field(default_factory=dict)
    media: list[MediaFile] = field(default_factory=list)


def preflight(path: Path) -> Preflight:
    """Validate spec, recipient headers and media; raise ``CampaignSpecError`` listing all."""
    loaded = load_campaign(path)
    spec = loaded.spec
    result = Preflight(loaded)
    problems: list[tuple[str, str]] = []
    needed = spec.placeholders() - set(spec.defaults)
    for index, file in enumerate(loaded.recipient_files()):
        try:
            with RecipientsFile(file, spec.default_region, spec.columns.names()) as recipients:
                result.columns[file] = recipients.columns
        except DispatcherError as exc:
            problems.append((f"recipients[{index}]", str(exc)))
            continue
        for name, column in spec.columns.named().items():
            if normalise_header(column) not in result.columns[file]:
                problems.append((f"columns.{name}", f"{file.name} has no column {column!r}"))
        missing = sorted(needed - set(result.columns[file]))
        if missing:
            problems.append(
                (
                    f"recipients[{index}]",
                    f"{file.name} has no column {', '.join(missing)} "
                    "(used by the message; add it or give a default)",
                )
            )
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
    if problems:
        raise CampaignSpecError(str(loaded.spec_path), problems)
    return result
