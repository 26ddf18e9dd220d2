"""The failure explanations: one entry for every code the dispatcher knows, and a
``retried`` flag that says what ``resending`` really does."""

from __future__ import annotations

import dataclasses

import pytest

from dispatcher.guardrails import health, signals
from dispatcher.operations.explanations import LINK, OUTCOMES, WHATSAPP, Explanation, explain
from dispatcher.providers.link import codes as link_codes
from dispatcher.providers.meta import codes as meta_codes
from dispatcher.resending.policy import BSUID_NOT_ALLOWED, CLASS_OF
from dispatcher.status import MessageStatus, SkipReason

LINK_FAILURES = sorted(
    {
        code
        for code, status in link_codes.DLR_STATUS.items()
        if status in (MessageStatus.FAILED, MessageStatus.UNKNOWN)
    }
    | set(link_codes.REQUEST_ERRORS)
)
GUARDRAIL_CODES = {code for codes, _ in signals.CLASSES.values() for code in codes}
WHATSAPP_CODES = sorted(
    set(meta_codes.SEND_ERRORS)
    | set(CLASS_OF)
    | GUARDRAIL_CODES
    | set(health.TEMPLATE_CODES)
    | {BSUID_NOT_ALLOWED}
)
#: Seed 004 'Resending': "Error codes from WhatsApp which are subject for resends".
SEED_004_RESENT = {1, 2, 4, 80007, 130429, 131000, 131016, 131049, 131057, 133004}


@pytest.mark.parametrize("code", LINK_FAILURES)
def test_every_link_failure_code_has_its_own_entry(code: int) -> None:
    found = explain(code, None, MessageStatus.FAILED, None)
    assert (found.code, found.source) == (f"LINK {code}", "LINK API (seed 004)")
    assert found.title and found.meaning and found.action


@pytest.mark.parametrize("code", WHATSAPP_CODES)
def test_every_whatsapp_code_the_dispatcher_acts_on_has_its_own_entry(code: int) -> None:
    found = explain(112403, code, MessageStatus.FAILED, None)
    assert found.code == str(code)
    assert found.source != "not documented"
    assert found.title and found.meaning and found.action


@pytest.mark.parametrize("code", sorted(WHATSAPP))
def test_retried_is_what_the_resend_table_decides(code: int) -> None:
    expected = code in CLASS_OF or code == BSUID_NOT_ALLOWED  # 131062: once, to the phone
    assert explain(112403, code, MessageStatus.FAILED, None).retried is expected


def test_the_codes_seed_004_calls_subject_for_resends_are_retried() -> None:
    assert all(explain(None, c, "failed", None).retried for c in SEED_004_RESENT)


def test_a_link_code_alone_is_never_retried() -> None:
    assert not any(explain(c, None, "failed", None).retried for c in LINK)


def test_the_whatsapp_code_of_a_report_wins_over_links_generic_code() -> None:
    assert explain(112403, 131049, "failed", None).title == "Meta chose not to deliver"
    assert explain(112406, 131026, "failed", None).code == "131026"


def test_a_meta_refusal_keeps_graphs_code_in_both_columns_and_maps_to_it() -> None:
    both = explain(130429, 130429, "failed", None)
    alone = explain(130429, None, "failed", None)
    assert (both.code, both.retried) == (alone.code, alone.retried) == ("130429", True)


@pytest.mark.parametrize(
    ("result_code", "whatsapp_code", "label"),
    [(None, 987654, "987654"), (112999, None, "112999"), (112403, 987654, "987654")],
)
def test_an_unknown_code_gets_an_honest_entry(
    result_code: int | None, whatsapp_code: int | None, label: str
) -> None:
    found = explain(result_code, whatsapp_code, "failed", None)
    assert (found.code, found.source, found.retried) == (label, "not documented", False)
    assert "Not documented" in found.meaning and "result description" in found.meaning


@pytest.mark.parametrize("reason", list(SkipReason))
def test_every_skip_reason_is_explained_whatever_codes_the_row_carries(
    reason: SkipReason,
) -> None:
    found = explain(112403, 131049, MessageStatus.SKIPPED, reason)
    assert (found.code, found.title, found.retried) == (reason, OUTCOMES[reason].title, False)


def test_an_unknown_skip_reason_is_named_as_it_is() -> None:
    assert explain(None, None, "skipped", "opted_out").code == "opted_out"


@pytest.mark.parametrize(
    "status", [MessageStatus.EXPIRED, MessageStatus.CANCELLED, "in_doubt", MessageStatus.FAILED]
)
def test_the_dispatchers_own_outcomes_are_explained_and_never_retried(status: str) -> None:
    found = explain(None, 131049 if status == MessageStatus.EXPIRED else None, status, None)
    assert (found.code, found.source, found.retried) == (status, "dispatcher", False)


def test_a_message_link_stopped_reporting_on_is_explained_by_its_code() -> None:
    assert explain(12409, None, MessageStatus.UNKNOWN, None).code == "LINK 12409"
    assert explain(None, None, MessageStatus.UNKNOWN, None).code == "unknown"


def test_an_explanation_is_frozen_and_serialisable() -> None:
    found = explain(None, 131026, "failed", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.title = "x"  # type: ignore[misc]
    assert set(found.as_dict()) == {f.name for f in dataclasses.fields(Explanation)}
