"""Hypothesis against the files a marketing team drops: the recipients CSV loader and the
campaign spec parser. Whatever the bytes, the outcome is a clear refusal or rows and
rejects with line numbers, never a traceback; the counts tried are printed at the end.
"""

from __future__ import annotations

import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatcher.audience.recipients import Reject, Row, read_recipients
from dispatcher.campaigns.spec import MAX_SPEC_BYTES, CampaignSpecError, load_campaign
from dispatcher.errors import RecipientsError
from tests.conftest import FUZZ_CASES

FUZZ = settings(
    max_examples=600,
    deadline=None,
    database=None,  # no .hypothesis directory in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One folder rewritten by every example (hypothesis runs them in one test call)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)


# --- recipients CSV -------------------------------------------------------------------

HEADERS = ["phone", "msisdn", "mobile", "bsuid", "parent_bsuid", "country", "name", "First Name"]
CELL_ALPHABET = string.printable + "\x00\u00e9\u00f8\u0660\u200b\ufeff\"';,\t"
cells = st.one_of(
    st.text(alphabet=CELL_ALPHABET, max_size=30),
    st.from_regex(r"\+?[0-9 ()-]{0,18}", fullmatch=True),
    st.from_regex(r"[A-Z]{2}\.[A-Za-z0-9.]{0,30}", fullmatch=True),  # BSUID-like
    st.sampled_from(["4.79123456E+10", "=cmd|' /C calc'!A0", '"', '""', "NO", "+4791234567"]),
)


@st.composite
def csv_texts(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    header = draw(st.lists(st.sampled_from(HEADERS) | st.text(max_size=8), min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(cells, max_size=6), max_size=12))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    encoded = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        return encoded
    # Damage: bytes that are not UTF-8, cut-off files, a BOM.
    at = draw(st.integers(0, len(encoded)))
    junk = draw(st.binary(max_size=4) | st.sampled_from([b"\xef\xbb\xbf", b"\xe9", b"\xff\xfe"]))
    return encoded[:at] + junk + encoded[at:]


@FUZZ
@given(content=csv_texts() | st.binary(max_size=300))
@example(content=b"phone,name\n+4791234567," + b"x" * 140_000 + b"\n+4791234568,b\n")
@example(content=b"phone,name\n" + b"+4791234567,a\n" * 3 + b"+4791234568,Ren\xe9\n")
def test_the_csv_loader_refuses_or_accounts_for_every_line(scratch: Path, content: bytes) -> None:
    FUZZ_CASES["recipients CSV loader"] += 1
    path = scratch / "people.csv"
    path.write_bytes(content)
    try:
        results = list(read_recipients(path, default_region="NO"))
    except RecipientsError as exc:
        assert str(exc).startswith(str(path)) and len(str(exc)) > len(str(path)) + 5
        return
    lines = [result.line for result in results]
    assert lines == sorted(set(lines)), "each line is reported once, in order"
    for result in results:
        assert result.line >= 2  # the header is line 1
        if isinstance(result, Reject):
            assert result.reason.strip()
        else:
            assert isinstance(result, Row) and result.identifiers
    if b"x" * 140_000 in content:  # the over-long field is a reject; the next row reads on
        assert [type(r) for r in results] == [Reject, Row]


# --- campaign spec --------------------------------------------------------------------

VALID: dict[str, Any] = {
    "name": "Spring sale",
    "sender": {"source": "+4790000000", "level": "STANDARD"},
    "template_category": "marketing",
    "message": {
        "type": "template",
        "template": {
            "name": "hello",
            "language": "en",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{name}"}]}],
        },
    },
    "recipients": "people.csv",
    "resend": {"transient": {"max_attempts": 2, "delay_minutes": 1}},
    "sending_window": {"start": "09:00", "end": "20:00", "time_zone": "recipient"},
}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    """The valid spec with one value replaced, removed, or an unknown key added."""
    spec = yaml.safe_load(yaml.safe_dump(VALID))
    path = draw(st.sampled_from([p for p in _paths(spec) if p]))
    parent = spec
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(json_values)
    elif action == "remove":
        parent.pop(path[-1])
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(json_values)
    return yaml.safe_dump(spec, allow_unicode=True)


@FUZZ
@given(
    text=mutated_specs()
    | st.text(max_size=200)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)
@example(text="a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)
))  # fmt: skip
@example(text="[" * 5000 + "]" * 5000)
@example(text="x" * (MAX_SPEC_BYTES + 1))
def test_the_spec_parser_accepts_or_names_the_field(scratch: Path, text: str) -> None:
    FUZZ_CASES["campaign spec parser"] += 1
    (scratch / "people.csv").write_text("phone,name\n+4791234567,Ann\n")
    (scratch / "campaign.yaml").write_bytes(text.encode("utf-8", errors="surrogatepass"))
    try:
        loaded = load_campaign(scratch)
    except CampaignSpecError as exc:
        assert exc.problems, "a refusal lists what is wrong"
        for where, problem in exc.problems:
            assert where and problem.strip()
        return
    assert loaded.spec.name
