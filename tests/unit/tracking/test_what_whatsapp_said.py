"""What a message's reports say about WhatsApp's id and pricing: the last report
saying each wins, and only what differs from the message is written."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from dispatcher.providers.base import Pricing
from dispatcher.status import MessageStatus
from dispatcher.tracking.apply import _Report, _what_whatsapp_said

_AT = datetime(2026, 12, 7, tzinfo=UTC)


def report(wa_id: str | None, pricing: Pricing | None) -> _Report:
    dlr = SimpleNamespace(whatsapp_message_id=wa_id, pricing=pricing)
    return _Report(1, dlr, MessageStatus.DELIVERED, _AT)  # type: ignore[arg-type]


def message(**columns: Any) -> SimpleNamespace:
    known = {"wa_message_id": None, "pricing_model": None, "pricing_category": None,
             "pricing_type": None, "pricing_billable": None}  # fmt: skip
    return SimpleNamespace(**(known | columns))


def said(row: SimpleNamespace, reports: list[_Report]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    _what_whatsapp_said(row, reports, changes)
    return changes


def test_the_last_report_saying_each_wins_and_empty_or_absent_say_nothing() -> None:
    early = Pricing("PMP", "marketing", "regular", True)
    late = Pricing("PMP", "utility", "regular", False)
    reports = [report("wamid.A", early), report("wamid.B", late), report("", None)]
    assert said(message(), reports) == {
        "wa_message_id": "wamid.B",
        "pricing_model": "PMP",
        "pricing_category": "utility",
        "pricing_type": "regular",
        "pricing_billable": False,
    }


def test_only_what_differs_from_the_message_is_written_and_widths_are_kept() -> None:
    pricing = Pricing("PMP", "x" * 200, None, True)
    row = message(wa_message_id="wamid.A", pricing_model="PMP", pricing_billable=True)
    changes = said(row, [report("wamid.A", pricing)])
    assert list(changes) == ["pricing_category"]
    assert 0 < len(changes["pricing_category"]) < 200
