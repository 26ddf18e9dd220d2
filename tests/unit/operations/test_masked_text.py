"""The console shows provider descriptions and rejected rows: numbers in them are
masked however they were written."""

from __future__ import annotations

import pytest

from dispatcher.operations.insight import masked_text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("phone=+47 912 34 567, first_name=Rune", "phone=+479•••••67, first_name=Rune"),
        ("phone=+4791234567", "phone=+479•••••67"),
        ("call 0047-91234567 now", "call •••67 now"),
        ("(212) 555-0100", "(•••00"),
        ("47.91.23.45.67", "•••67"),
        ("(#131026) Message undeliverable", "(#131026) Message undeliverable"),
        ("+46 70 12", "+46 70 12"),  # six digits: no number
        ("store=Oslo", "store=Oslo"),
        ("eligible from 2026-12-10 09:00 UTC", "eligible from 2026-12-10 09:00 UTC"),
        ("at 2026-12-10T09:00:00, +4791234567", "at 2026-12-10T09:00:00, +479•••••67"),
    ],
)
def test_numbers_are_masked_however_written(text: str, shown: str) -> None:
    assert masked_text(text) == shown
