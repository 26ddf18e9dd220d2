"""The message a campaign sends, as written in its spec, and its rendering per person.

A spec writes the LINK message itself (seed 004 'Messages', as YAML or TOML) with two
additions:

* ``{column}`` in any string takes the value from the recipient's CSV row
  (``render.render``: ``{{``/``}}`` for literal braces);
* ``file: banner.png`` in any media object (``image``, ``video``, ``audio``,
  ``document``, ``sticker``) names a local file, uploaded once and sent by media id.

For templates, ``language: en`` may stand for ``language: {code: en}``.
The structure is validated up front with stand-in values; every rendered message is
validated again, so a value that breaks a limit rejects that row, not the campaign.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from dispatcher.campaigns import spec_source
from dispatcher.campaigns.render import MissingValue, placeholders, render
from dispatcher.messages import Message, parse_message

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
_STAND_IN_MEDIA_ID = "0"
_STAND_IN_VALUE = "x"


class InvalidMessage(ValueError):
    """A message (as written, or as rendered for one row) breaks the documented format."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A ``file:`` in the message: where it is, which kind of media, which file."""

    path: tuple[str | int, ...]
    kind: str
    file: str
    in_template_header: bool


def normalise(message: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the spec's conveniences that are not placeholders or files."""
    tree = copy.deepcopy(dict(message))
    template = tree.get("template")
    if tree.get("type") == "template" and isinstance(template, dict):
        if isinstance(template.get("language"), str):
            template["language"] = {"code": template["language"]}
        template.setdefault("components", [])
    return tree


def media_refs(tree: Any, path: tuple[str | int, ...] = ()) -> Iterator[MediaRef]:
    """Every ``file:`` media object in the message."""
    if isinstance(tree, dict):
        if "file" in tree and path and path[-1] in MEDIA_KINDS:
            in_header = "components" in path and _header_path(path)
            yield MediaRef(path, str(path[-1]), str(tree["file"]), in_header)
            return
        for key, value in tree.items():
            yield from media_refs(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from media_refs(value, (*path, index))


def _header_path(path: tuple[str | int, ...]) -> bool:
    # .../components[i]/parameters[j]/<kind>: a template header parameter (PDF only for
    # documents, no captions: seed 004 'Document parameter').
    return len(path) >= 4 and path[-3] == "parameters" and "template" in path


def columns(tree: Any) -> set[str]:
    """Every recipient column the message refers to."""
    found: set[str] = set()
    for text in _strings(tree):
        found |= placeholders(text)
    return found


def _strings(tree: Any) -> Iterator[str]:
    if isinstance(tree, str):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _strings(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _strings(value)


Renderer = Callable[[Mapping[str, str]], Any]


def renderer(tree: Any, media_ids: Mapping[str, str]) -> Renderer:
    """The message with placeholders filled and ``file:`` replaced by ``id:``, as a
    function of a person's values, prepared once for one tree and one set of media
    ids: what holds no placeholder is rendered now and shared by every call (nothing
    downstream changes a rendered tree), so a person costs only the strings that name
    a column."""
    fixed, value = _prepared(tree, media_ids)
    if fixed:
        return lambda _: value
    return cast(Renderer, value)


def _prepared(tree: Any, media_ids: Mapping[str, str]) -> tuple[bool, Any]:
    """(True, the rendered tree) when ``tree`` names no column; else (False, a
    function of the values that renders it)."""
    if isinstance(tree, str):
        if not placeholders(tree):
            return True, render(tree, {})
        return False, lambda values: render(tree, values)
    if isinstance(tree, list):
        items = [_prepared(v, media_ids) for v in tree]
        if all(fixed for fixed, _ in items):
            return True, [v for _, v in items]
        parts = [(lambda _, v=v: v) if fixed else v for fixed, v in items]
        return False, lambda values: [part(values) for part in parts]
    if isinstance(tree, dict):
        entries = [(k, _prepared(v, media_ids)) for k, v in tree.items() if k != "file"]
        if "file" in tree:
            entries.append(("id", (True, media_ids.get(str(tree["file"]), _STAND_IN_MEDIA_ID))))
        if all(fixed for _, (fixed, _) in entries):
            return True, {k: v for k, (_, v) in entries}
        fields = [(k, (lambda _, v=v: v) if fixed else v) for k, (fixed, v) in entries]
        return False, lambda values: {k: field(values) for k, field in fields}
    return True, tree


def build(tree: Any, values: Mapping[str, str], media_ids: Mapping[str, str]) -> dict[str, Any]:
    """Render and validate one recipient's message; returns its wire form.

    Raises ``MissingValue`` for an empty column and ``InvalidMessage`` when the
    rendered message breaks a documented rule.
    """
    return validated(renderer(tree, media_ids)(values))


def validated(rendered: Any) -> dict[str, Any]:
    """A rendered message validated; its wire form (``InvalidMessage`` if it breaks a
    documented rule)."""
    try:
        return parse_message(rendered).to_wire()
    except ValidationError as exc:
        raise InvalidMessage(problems(exc, rendered, prefix="message")) from None


def check(tree: Any, folder: Path) -> list[tuple[str, str]]:
    """Problems with the message as written: structure (with stand-in values) and files."""
    found: list[tuple[str, str]] = []
    if not isinstance(tree, dict):
        return [("message", "must be a mapping (a LINK message, seed 004 'Messages')")]
    for ref in media_refs(tree):
        if not (folder / ref.file).is_file():
            found.append((dotted(("message", *ref.path, "file")), f"file not found: {ref.file}"))
    stand_in = dict.fromkeys(columns(tree), _STAND_IN_VALUE)
    try:
        build(tree, stand_in, {})
    except InvalidMessage as exc:
        found.extend(exc.problems)
    except MissingValue:  # cannot happen: every column has a stand-in
        pass
    return found


def problems(exc: ValidationError, data: Any, prefix: str) -> list[tuple[str, str]]:
    """pydantic errors as (field path as the user wrote it, message)."""
    found = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = spec_source.unknown_key(loc[-1], spec_source.keys_at(Message, loc[:-1]))
        found.append((dotted((prefix, *_user_path(loc, data))), message))
    return found


def _user_path(loc: tuple[Any, ...], data: Any) -> list[Any]:
    """Drop the union tags pydantic inserts into error paths ('template', 'list', ...).

    A part is a tag when the data at that point is a mapping and the part is not one
    of its keys, or the part after it is (``('template', 'template', 'name')``: the
    first 'template' names the union member, the second is the field).
    """
    out: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        following = loc[index + 1] if index + 1 < len(loc) else None
        if isinstance(node, dict) and isinstance(part, str) and following is not None:
            is_tag = part not in node or (isinstance(following, str) and following in node)
            if is_tag:
                continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return out


def dotted(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
