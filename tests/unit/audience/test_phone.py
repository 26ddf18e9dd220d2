"""``dispatcher.audience.phone.e164`` gives the phonenumbers library's verdict for every input.

The oracle is the library itself (``_library`` below). Deterministic tests walk every
example number of every region and non-geographic entity through the formats a
recipient list contains, dialled from several regions, and mutate them into near
misses; hypothesis then throws random digit strings, known prefixes and mutated
examples at both. No timing here: speed is measured, not asserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import (
    COUNTRY_CODES_FOR_NON_GEO_REGIONS,
    SUPPORTED_REGIONS,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
)

from dispatcher.audience.phone import e164

OTHER_REGIONS = ("US", "DE", "GB", "BR", "IN")
# Not region codes parse() accepts for national input: unknown, "unknown", non-geo.
ODD_REGIONS = ("XX", "ZZ", "001")
NON_GEO = "001"
ALL_REGIONS: list[str | None] = [*sorted(SUPPORTED_REGIONS), None, *ODD_REGIONS]

Case = tuple[str, str | None]


def _library(text: str, region: str | None) -> str | None:
    """The reference semantics, verbatim."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _mismatches(cases: Iterable[Case]) -> list[tuple[str, str | None, str | None, str | None]]:
    """Cases where ``e164`` and the library differ, as (text, region, ours, theirs)."""
    found = []
    for text, region in dict.fromkeys(cases):
        ours, theirs = e164(text, region), _library(text, region)
        if ours != theirs:
            found.append((text, region, ours, theirs))
    return found


def _digits(formatted: str) -> str:
    """A formatted number as the cleaned-up input ``e164`` gets: digits, leading '+'."""
    return ("+" if formatted.startswith("+") else "") + re.sub(r"\D", "", formatted)


def _examples(region: str) -> list[PhoneNumber]:
    """Example numbers of every type, and the invalid example, for a region code.

    For "001" these come from each non-geographic entity's metadata.
    """
    numbers: list[PhoneNumber | None] = []
    if region == NON_GEO:
        for code in sorted(COUNTRY_CODES_FOR_NON_GEO_REGIONS):
            numbers.append(phonenumbers.example_number_for_non_geo_entity(code))
            metadata = PhoneMetadata.metadata_for_nongeo_region(code)
            assert metadata is not None
            for desc in (metadata.general_desc, metadata.fixed_line, metadata.mobile,
                         metadata.toll_free, metadata.premium_rate, metadata.shared_cost,
                         metadata.personal_number, metadata.voip, metadata.pager,
                         metadata.uan, metadata.voicemail):  # fmt: skip
                if desc is not None and desc.example_number:
                    numbers.append(phonenumbers.parse(f"+{code}{desc.example_number}"))
    else:
        for number_type in PhoneNumberType.values():
            numbers.append(phonenumbers.example_number_for_type(region, number_type))
        numbers.append(phonenumbers.invalid_example_number(region))
    return [number for number in numbers if number is not None]


def _written_forms(number: PhoneNumber) -> list[str]:
    """How a recipient list may write the number, once cleaned to digits."""
    e164_form = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    forms = [
        e164_form,
        e164_form[1:],
        "00" + e164_form[1:],
        _digits(phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)),
        _digits(phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)),
    ]
    for calling_from in OTHER_REGIONS:  # e.g. 011 from the US, 0 + area code at home
        forms.append(
            _digits(phonenumbers.format_out_of_country_calling_number(number, calling_from))
        )
    return forms


def _mutations(form: str) -> list[str]:
    """Near misses of a written number: one digit fewer, more or different; a leading 0."""
    plus, digits = ("+", form[1:]) if form.startswith("+") else ("", form)
    middle = len(digits) // 2
    changed = [
        digits[:-1],
        digits + "5",
        digits[:middle] + "0" + digits[middle:],
        digits[:-1] + str((int(digits[-1]) + 1) % 10),
        digits[:middle] + str((int(digits[middle]) + 7) % 10) + digits[middle + 1 :],
        "0" + digits,
    ]
    return [plus + text for text in changed] + ["0" + form]


def _dialled_from(region: str) -> list[str | None]:
    """Regions to parse a region's examples with: none, its own, others, odd ones."""
    own = [] if region == NON_GEO else [region, region.lower()]
    return [None, *own, *OTHER_REGIONS, *ODD_REGIONS]


REGIONS_UNDER_TEST = [*sorted(SUPPORTED_REGIONS), NON_GEO]


@pytest.mark.parametrize("region", REGIONS_UNDER_TEST)
def test_example_numbers_match_library(region: str) -> None:
    cases = [
        (form, dialled_from)
        for number in _examples(region)
        for form in _written_forms(number)
        for dialled_from in _dialled_from(region)
    ]
    assert _mismatches(cases) == []


@pytest.mark.parametrize("region", REGIONS_UNDER_TEST)
def test_mutated_example_numbers_match_library(region: str) -> None:
    own: list[str | None] = [] if region == NON_GEO else [region]
    cases = [
        (mutated, dialled_from)
        for number in _examples(region)
        for form in _written_forms(number)[:5]
        for mutated in _mutations(form)
        for dialled_from in [None, *own, "US"]
    ]
    assert _mismatches(cases) == []


def test_examples_are_plentiful() -> None:
    """Guards the tests above against silently testing nothing."""
    assert len(SUPPORTED_REGIONS) > 200
    assert sum(len(_examples(region)) for region in REGIONS_UNDER_TEST) > 1000
    assert e164("+4930123456", None) == "+4930123456"


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("", "DE"),
        ("+", None),
        ("1", "DE"),
        ("12", "DE"),  # viable but too short
        ("+12", None),
        ("+123", None),
        ("+4930123456", "de"),  # lower-case region: needs the '+', metadata upper-cased
        ("030123456", "de"),
        ("+211912345678", "ß"),  # "ß".upper() == "SS" (South Sudan)
        ("+80012345678", NON_GEO),  # region "001" keeps metadata None: no prefix stripping
        ("80012345678", NON_GEO),
        ("+0049301234567", "DE"),  # bad code after '+': retried as dialled from DE
        ("+01149301234567", "US"),
        ("+0049301234567", None),
        ("+00", "DE"),  # IDD, then too short
        ("0049", "DE"),
        ("00049301234567", "DE"),  # digit after the IDD is 0: not an IDD
        ("4930123456", "DE"),  # country code without '+'
        ("49030123456", "DE"),
        ("12015550123", "US"),
        ("2685551234", "AG"),  # NANPA region with a transform rule
        ("4621234", "AG"),
        ("0612345678", "IT"),  # Italian leading zero
        ("+390612345678", None),
        ("+3900612345678", None),
        ("+8790000000000000000", None),  # national number > 17 digits
        ("+49" + "1" * 17, None),
        ("+49" + "1" * 18, None),
        ("1" * 250, "DE"),
        ("1" * 251, "DE"),
        ("+" + "4" * 249, None),
        ("+" + "4" * 250, None),
        ("\u0660\u0661\u0660\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "EG"),  # fallback
        ("+49 30 123456", None),  # not cleaned: the fallback path
    ],
)
def test_edge_cases_match_library(text: str, region: str | None) -> None:
    assert e164(text, region) == _library(text, region)


# --- property tests ------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=4000,
    deadline=None,  # the library loads metadata lazily: first calls are slow
    database=None,  # no .hypothesis directory in the working tree
    suppress_health_check=[HealthCheck.too_slow],
)


def _known_prefixes() -> list[str]:
    """Calling codes, national prefixes and IDDs: the digits parse() treats specially."""
    prefixes = {str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    prefixes |= {"0", "00", "000", "011", "0011", "8", "810", "1", "9"}
    for region in SUPPORTED_REGIONS:
        metadata = PhoneMetadata.metadata_for_region(region)
        assert metadata is not None
        for prefix in (
            metadata.national_prefix,
            metadata.preferred_international_prefix,
            metadata.international_prefix,
        ):
            if prefix and prefix.isdigit():
                prefixes.add(prefix)
    return sorted(prefixes)


def _example_forms() -> list[str]:
    return sorted(
        {
            form
            for region in REGIONS_UNDER_TEST
            for number in _examples(region)
            for form in _written_forms(number)
        }
    )


regions = st.sampled_from(ALL_REGIONS)
digit_strings = st.text(alphabet="0123456789", max_size=20)
pluses = st.sampled_from(["", "+"])


@PROPERTY_SETTINGS
@given(plus=pluses, digits=digit_strings, region=regions)
def test_random_digits_match_library(plus: str, digits: str, region: str | None) -> None:
    text = plus + digits
    assert e164(text, region) == _library(text, region)


@PROPERTY_SETTINGS
@given(
    plus=pluses,
    prefixes=st.lists(st.sampled_from(_known_prefixes()), min_size=1, max_size=2),
    digits=st.text(alphabet="0123456789", max_size=15),
    region=regions,
)
def test_known_prefixes_match_library(
    plus: str, prefixes: list[str], digits: str, region: str | None
) -> None:
    text = plus + "".join(prefixes) + digits
    assert e164(text, region) == _library(text, region)


@PROPERTY_SETTINGS
@given(
    form=st.sampled_from(_example_forms()),
    cut=st.integers(min_value=0, max_value=20),
    drop=st.integers(min_value=0, max_value=3),
    insert=st.text(alphabet="0123456789", max_size=3),
    region=regions,
)
def test_edited_examples_match_library(
    form: str, cut: int, drop: int, insert: str, region: str | None
) -> None:
    """Example numbers with a few digits replaced at a random place: mostly near-valid."""
    at = min(max(cut, form.startswith("+")), len(form))  # keep a '+' in front
    text = form[:at] + insert + form[at + drop :]
    assert e164(text, region) == _library(text, region)
