"""A campaign spec as its author wrote it, so problems can be told in those terms.

YAML 1.1 (PyYAML) turns some plain words into other types: ``NO``, ``no``, ``on``,
``off``, ``y``, ``n``, ``yes`` into booleans, ``+4790000000`` into a number,
``2026-12-01`` into a date. Where a text was meant, pydantic can only say "Input
should be a valid string". ``load_yaml`` therefore also returns where each such value
was written and what YAML made of it, so the error can name the trap and its fix
(quotes). TOML has no such trap: a bare word there is a syntax error.

Also here: a syntax error as one sentence naming file, line and column, and the
nearest known key for an unknown one.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag

KeyPath = tuple[Any, ...]  # keys and list indices from the root of the document

_RETYPED = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}


@dataclass(frozen=True, slots=True)
class Written:
    """An unquoted value YAML read as something other than text."""

    path: KeyPath
    text: str  # as written
    read_as: str  # "false", "a number", "a date"...
    line: int

    def hint(self) -> str:
        return (
            f"YAML read {self.text} as {self.read_as} (line {self.line}): write it in "
            f'quotes, "{self.text}"'
        )


class _Loader(yaml.SafeLoader):
    """SafeLoader whose scalar conversion errors are YAML errors with a line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            # '2026-13-01' matches YAML's date pattern but is no date; '!!int x'.
            kind = node.tag.rsplit(":", 1)[-1]
            what = "a date" if kind == "timestamp" else f"a value of type {kind}"
            problem = (
                f"{node.value} looks like {what} to YAML but is not one ({exc}): "
                "write it in quotes if it is text"
            )
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def load_yaml(text: str, limit: int) -> tuple[Any, dict[KeyPath, Written]]:
    """The document, and where its retyped values were written (the first ``limit``
    nodes are looked at: an alias bomb is refused afterwards by its size)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
        return data, _retyped(loader, node, limit)
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _retyped(loader: _Loader, root: yaml.Node, limit: int) -> dict[KeyPath, Written]:
    found: dict[KeyPath, Written] = {}
    pending: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    for _ in range(limit):
        if not pending:
            break
        node, path = pending.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = loader.construct_object(key_node)
                    pending.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, i)) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.ScalarNode) and node.style is None and node.tag in _RETYPED:
            value = loader.construct_object(node)
            # A key written twice keeps its last value, which this walk meets first.
            found.setdefault(
                path, Written(path, node.value, _read_as(value), node.start_mark.line + 1)
            )
    return found


def _read_as(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    return "a number"


# PyYAML's names for where a syntax error began, as a spec's author knows them.
_CONTEXTS = {
    "flow sequence": "[...] list",
    "flow mapping": "{...} mapping",
    "block mapping": "mapping",
    "block sequence": "list",
    "block collection": "list",
    "block scalar": "| or > text",
    "quoted scalar": "quoted text",
    "simple key": "key",
}
_ADVICE = {
    "mapping values are not allowed here": "a value with ': ' in it needs quotes",
    "found character '\\t' that cannot start any token": "YAML takes spaces, not tabs",
}
_TOML_AT = re.compile(r"^(?P<problem>.*?) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def syntax_problem(file_name: str, exc: Exception, text: str) -> str:
    """A YAML or TOML syntax error in one sentence: file, line, column, what."""
    if isinstance(exc, tomllib.TOMLDecodeError):
        message = str(exc)
        found = _TOML_AT.match(message)
        if found is None:
            return f"{file_name}: {_first_lower(message)}"
        where = f"line {found['line']}, column {found['column']}"
        return f"{file_name} {where}: {_first_lower(found['problem'])}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a byte"
        return f"{file_name} line {line}, column {column}: {character} is not allowed in YAML"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "not valid YAML"
        context = exc.context or ""
        if context and not context.startswith("while "):
            # "expected a single document in the stream" + "but found another document"
            problem = f"{context}, {problem}"
        sentence = f"{file_name} line {mark.line + 1}, column {mark.column + 1}: {problem}"
        if problem in _ADVICE:
            sentence += f" ({_ADVICE[problem]})"
        elif context.startswith("while ") and exc.context_mark is not None:
            began = exc.context_mark.line + 1
            kind = re.sub(r"^while (parsing|scanning|constructing) an? ", "", context)
            if began != mark.line + 1:
                sentence += f" (in the {_CONTEXTS.get(kind, kind)} from line {began})"
        return sentence
    return f"{file_name}: {str(exc).splitlines()[0] if str(exc) else 'not valid YAML'}"


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def unknown_key(key: Any, known: Sequence[str] | None) -> str:
    """What to say of a key the model does not have, with the nearest it does."""
    if not known:
        return "unknown key"
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return f"unknown key; the keys here are {', '.join(sorted(known))}"


def keys_at(root: Any, loc: Sequence[Any]) -> list[str] | None:
    """The keys (aliases where a field has one) of the model at pydantic error location
    ``loc`` under type ``root``; None when the location does not lead to one model."""
    current = root
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    model = _bare(current)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return [info.alias or name for name, info in model.model_fields.items()]


def _step(annotation: Any, part: Any) -> Any:
    """The type at ``part`` inside ``annotation``: a field, an item, or the union
    member pydantic named by its tag."""
    members = _members(annotation)
    if len(members) > 1:
        for member in members:
            if part in _tags(member):
                return member
        return None
    bare = _bare(members[0]) if members else None
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        for name, info in bare.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin, args = get_origin(bare), get_args(bare)
    if origin in (list, tuple, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, Sequence)
    ):
        return args[0] if args and isinstance(part, int) else None
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _bare(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    bare = _bare(annotation)
    if get_origin(bare) in (Union, UnionType):
        return [m for m in get_args(bare) if m is not type(None)]
    return [annotation]


def _tags(member: Any) -> set[Any]:
    """How pydantic may name this union member in an error location."""
    tags: set[Any] = set()
    if get_origin(member) is Annotated:
        tags |= {m.tag for m in get_args(member)[1:] if isinstance(m, Tag)}
    bare = _bare(member)
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        tags.add(bare.__name__)
        kind = bare.model_fields.get("type")
        if kind is not None and get_origin(kind.annotation) is Literal:
            tags |= {str(v) for v in get_args(kind.annotation)}
    return tags
