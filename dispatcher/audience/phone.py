"""Phone numbers to E.164, with the phonenumbers library's verdicts at a fraction of its cost.

``e164(text, region)`` returns exactly what this would return::

    n = phonenumbers.parse(text, region)  # NumberParseException -> None
    phonenumbers.format_number(n, E164) if phonenumbers.is_valid_number(n) else None

Why not just call the library: each call looks its metadata's regular expressions up by
pattern string through ``re.compile``, i.e. through the ``re`` module's 512-entry cache.
A recipient list mixing regions touches thousands of patterns, the cache thrashes, and a
number costs 200-240 µs, about 4 minutes per million rows. (The library's own
``phonenumbers.enable_pattern_cache()``, a process-wide switch, still leaves ~20 µs of
generic parsing and validation per number.) Here the same metadata
(``PhoneMetadata``, ``COUNTRY_CODE_TO_REGION_CODE``) is compiled once per region or
calling code into a ``_Plan``, and the library's parse/validate steps are replayed for
``+``/digit input, on which its RFC 3966, extension and punctuation handling are no-ops.

Paths (function names below mirror the ``phonenumberutil`` functions they replay):

* fast: any ``text`` of ASCII digits with at most one leading ``+`` -- E.164, national
  format with a region (national prefix and transform rules), international format
  after the region's IDD, and digits that start with the region's country code but
  lack the ``+``; every region code, valid or not.
* fallback to the library itself: anything else (other Unicode digits, punctuation,
  letters, several ``+``), which the callers' clean-up is not meant to produce.

How equivalence is shown: ``tests/unit/audience/test_phone.py`` compares ``e164`` with the library
on every example number of every region and non-geographic entity in several formats,
from several regions, plus mutations of them, and on hypothesis-generated digit strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    REGION_CODE_FOR_NON_GEO_ENTITY,
    SUPPORTED_REGIONS,
    PhoneMetadata,
    PhoneNumberDesc,
    ValidationResult,
)
from phonenumbers.phonenumberutil import (
    _MAX_INPUT_STRING_LENGTH,
    _MAX_LENGTH_COUNTRY_CODE,
    _MAX_LENGTH_FOR_NSN,
    _MIN_LENGTH_FOR_NSN,
)

__all__ = ["e164", "reference", "warm"]

# parse() results other than a number: ``None`` means the library raised
# NumberParseException; ``_NO_COUNTRY_CODE`` means no calling code was found in the input.
_NO_COUNTRY_CODE: tuple[int, str] = (0, "")
_COUNTRY_CODES: dict[str, int] = {str(code): code for code in COUNTRY_CODE_TO_REGION_CODE}
_COUNTRY_CODE_SIZES = range(1, _MAX_LENGTH_COUNTRY_CODE + 1)


def reference(text: str, region: str | None) -> str | None:
    """The library's own answer: the oracle ``e164`` must equal, and its fallback."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One ``PhoneMetadata`` with its patterns compiled, shaped for the steps that use it."""

    country_code: int
    country_code_digits: str
    idd: re.Pattern[str] | None  # international_prefix; None never matches
    national_prefix: re.Pattern[str] | None  # national_prefix_for_parsing
    transform: str | None  # national_prefix_transform_rule
    general: re.Pattern[str] | None  # general_desc pattern; None never matches
    lengths: tuple[int, ...]  # general_desc.possible_length
    local_lengths: tuple[int, ...]  # general_desc.possible_length_local_only
    # Index: NSN length (0.._MAX_LENGTH_FOR_NSN). The number-type patterns that
    # _number_type_helper would try for an NSN of that length, as one alternation;
    # None where there are none or the general description's lengths exclude it.
    types_by_length: tuple[re.Pattern[str] | None, ...]
    leading_digits: re.Pattern[str] | None


def e164(text: str, region: str | None) -> str | None:
    """``text`` (``+`` and digits) as E.164 if the library deems it valid, else ``None``."""
    if len(text) > _MAX_INPUT_STRING_LENGTH:
        return None
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits:
        return None  # "" and "+" are not viable phone numbers
    if not (digits.isascii() and digits.isdigit()):
        return reference(text, region)
    # _is_viable_phone_number: two bare digits, or three digits after a plus sign.
    if len(digits) < (3 if plus else _MIN_LENGTH_FOR_NSN):
        return None
    if not plus and region not in SUPPORTED_REGIONS:  # _check_region_for_parsing
        return None
    home = _home_plan(region)
    found = _split_plus(digits, home) if plus else _split_bare(digits, home)
    if found is None:
        return None
    country_code, national = found
    plan: _Plan | None
    if country_code == 0:
        # No calling code in the input: the number is national to the (valid) region.
        assert home is not None
        country_code, national, plan = home.country_code, digits, home
    else:
        plan = _plan_after_extraction(country_code, region)
    nsn = _national_significant_number(national, plan)
    if nsn is None or not _is_valid_number(country_code, nsn):
        return None
    # The NSN keeps its leading zeros (italian_leading_zero / number_of_leading_zeros
    # reproduce them exactly), so the E.164 form is the digits as parsed.
    return f"+{country_code}{nsn}"


def _split_plus(digits: str, home: _Plan | None) -> tuple[int, str] | None:
    """``_maybe_extract_country_code`` for ``+digits``, including parse()'s retry.

    An unknown calling code after the plus raises INVALID_COUNTRY_CODE, and parse()
    then tries again without the plus, as if the digits were dialled in ``region``.
    """
    found = _extract_country_code(digits)
    if found is not None:
        return found
    retried = _split_bare(digits, home)
    if retried is None or retried[0] == 0:
        return None  # "Could not interpret numbers after plus-sign."
    return retried


def _split_bare(digits: str, home: _Plan | None) -> tuple[int, str] | None:
    """``_maybe_extract_country_code`` for digits without a plus, dialled in ``home``."""
    if home is None:
        return _NO_COUNTRY_CODE
    match = home.idd.match(digits) if home.idd is not None else None
    # _parse_prefix_as_idd: digits after an IDD may not start with 0 (no calling code does).
    if match is not None and not digits.startswith("0", match.end()):
        after_idd = digits[match.end() :]
        if len(after_idd) <= _MIN_LENGTH_FOR_NSN:
            return None  # TOO_SHORT_AFTER_IDD
        return _extract_country_code(after_idd)  # None: INVALID_COUNTRY_CODE
    return _strip_own_country_code(digits, home)


def _strip_own_country_code(digits: str, home: _Plan) -> tuple[int, str]:
    """Treat leading digits equal to the region's calling code as that code, when apt.

    The library does so if the number did not match the region's general pattern but
    does without the code (after national-prefix stripping), or if it is too long.
    """
    if not digits.startswith(home.country_code_digits):
        return _NO_COUNTRY_CODE
    rest = _strip_national_prefix(digits[len(home.country_code_digits) :], home)
    fits_only_without = not _matches(home.general, digits) and _matches(home.general, rest)
    too_long = _length_verdict(len(digits), home) == ValidationResult.TOO_LONG
    return (home.country_code, rest) if fits_only_without or too_long else _NO_COUNTRY_CODE


def _extract_country_code(digits: str) -> tuple[int, str] | None:
    """The shortest known calling code at the start of ``digits`` and the rest, or None."""
    if digits.startswith("0"):
        return None
    for size in _COUNTRY_CODE_SIZES:  # past the end, digits[:size] was tried already
        code = _COUNTRY_CODES.get(digits[:size])
        if code is not None:
            return code, digits[size:]
    return None


def _plan_after_extraction(country_code: int, region: str | None) -> _Plan | None:
    """The metadata parse() continues with once a calling code was read from the input.

    That is the calling code's main region, except that parse() keeps the caller's
    metadata when ``region`` already names that main region. The two differ only for
    "001": ``metadata_for_region("001")`` is None, so no national prefix is stripped.
    """
    main_region = COUNTRY_CODE_TO_REGION_CODE[country_code][0]
    if main_region == region:
        return _region_plan(main_region)
    return _country_code_plan(country_code)


def _national_significant_number(national: str, plan: _Plan | None) -> str | None:
    """parse()'s ending: the NSN after national prefix stripping, or None if it raised."""
    if len(national) < _MIN_LENGTH_FOR_NSN:
        return None  # TOO_SHORT_NSN
    if plan is not None:
        stripped = _strip_national_prefix(national, plan)
        # Strip only if what remains could be a whole number; else it may be a short one.
        if _length_verdict(len(stripped), plan) in (
            ValidationResult.IS_POSSIBLE,
            ValidationResult.TOO_LONG,
        ):
            national = stripped
    if len(national) > _MAX_LENGTH_FOR_NSN:
        return None  # TOO_LONG
    return national


def _strip_national_prefix(number: str, plan: _Plan) -> str:
    """``_maybe_strip_national_prefix_carrier_code``, keeping only the number it returns."""
    if not number or plan.national_prefix is None:
        return number
    match = plan.national_prefix.match(number)
    if match is None:
        return number
    # A transform rule applies only if the prefix pattern's last group took part
    # (e.g. a 7-digit local number that gets its area code); otherwise cut the prefix.
    if plan.transform is None or match.groups()[-1] is None:
        result = number[match.end() :]
    else:
        result = plan.national_prefix.sub(plan.transform, number, count=1)
    # Never turn a number that fits the general pattern into one that does not.
    if _matches(plan.general, number) and not _matches(plan.general, result):
        return number
    return result


def _length_verdict(length: int, plan: _Plan) -> int:
    """``_test_number_length`` for type UNKNOWN: a ``ValidationResult`` value."""
    lengths = plan.lengths
    if length in plan.local_lengths:
        return ValidationResult.IS_POSSIBLE_LOCAL_ONLY
    if lengths[0] == length:
        return ValidationResult.IS_POSSIBLE
    if lengths[0] > length:
        return ValidationResult.TOO_SHORT
    if lengths[-1] < length:
        return ValidationResult.TOO_LONG
    if length in lengths:  # the library skips lengths[0], known to differ by now
        return ValidationResult.IS_POSSIBLE
    return ValidationResult.INVALID_LENGTH


def _matches(pattern: re.Pattern[str] | None, number: str) -> bool:
    """``_match_national_number`` without prefix matches: a whole-string match."""
    return pattern is not None and pattern.fullmatch(number) is not None


def _is_valid_number(country_code: int, national: str) -> bool:
    """``is_valid_number``: valid for the region ``region_code_for_number`` picks."""
    candidates = _regions_for_country_code(country_code)
    if len(candidates) == 1:
        plan, same_code = candidates[0]
        return plan is not None and same_code and _is_valid_for(national, plan)
    # _region_code_for_number_from_list: the first region whose leading digits match,
    # or (for regions without them) for which the number is valid.
    for plan, same_code in candidates:
        if plan is None:
            continue
        if plan.leading_digits is not None:
            if plan.leading_digits.match(national):
                return same_code and _is_valid_for(national, plan)
        elif _is_valid_for(national, plan):
            return same_code
    return False


def _is_valid_for(national: str, plan: _Plan) -> bool:
    """``_number_type_helper(...) != UNKNOWN``: general and some type pattern match."""
    types = plan.types_by_length[len(national)]
    return _matches(types, national) and _matches(plan.general, national)


@cache
def _regions_for_country_code(country_code: int) -> tuple[tuple[_Plan | None, bool], ...]:
    """Each region of a calling code: its plan (None: no metadata) and whether that
    metadata has this calling code, which ``is_valid_number_for_region`` insists on."""
    candidates = []
    for region in COUNTRY_CODE_TO_REGION_CODE[country_code]:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        plan = None if metadata is None else _plan(metadata)
        same_code = region == REGION_CODE_FOR_NON_GEO_ENTITY or (
            plan is not None and plan.country_code == country_code
        )
        candidates.append((plan, same_code))
    return tuple(candidates)


@lru_cache(maxsize=1024)  # keyed by the caller's spelling, which may be anything
def _home_plan(region: str | None) -> _Plan | None:
    """parse()'s initial metadata: ``metadata_for_region(region.upper())``, if any."""
    return None if region is None else _region_plan(region.upper())


def _region_plan(region: str) -> _Plan | None:
    """Plan for ``PhoneMetadata.metadata_for_region(region)``; None where that is None."""
    return _supported_region_plan(region) if region in SUPPORTED_REGIONS else None


@cache
def _supported_region_plan(region: str) -> _Plan:
    metadata = PhoneMetadata.metadata_for_region(region)
    assert metadata is not None, region
    return _plan(metadata)


@cache
def _country_code_plan(country_code: int) -> _Plan | None:
    """Plan for the main region of a calling code (``"001"``: the non-geo entity)."""
    main_region = COUNTRY_CODE_TO_REGION_CODE[country_code][0]
    if main_region == REGION_CODE_FOR_NON_GEO_ENTITY:
        metadata = PhoneMetadata.metadata_for_nongeo_region(country_code)
        return None if metadata is None else _plan(metadata)
    return _region_plan(main_region)


def _plan(metadata: PhoneMetadata) -> _Plan:
    """Compile what parse() and is_valid_number() read from ``metadata``."""
    general = metadata.general_desc
    assert general is not None and general.possible_length, metadata.id
    assert metadata.country_code is not None, metadata.id
    return _Plan(
        country_code=metadata.country_code,
        country_code_digits=str(metadata.country_code),
        idd=_compile_unless_none(metadata.international_prefix),
        national_prefix=_compile_unless_empty(metadata.national_prefix_for_parsing),
        transform=metadata.national_prefix_transform_rule or None,
        general=_compile_unless_empty(general.national_number_pattern),
        lengths=tuple(general.possible_length),
        local_lengths=tuple(general.possible_length_local_only),
        types_by_length=tuple(
            _type_patterns(metadata, length) for length in range(_MAX_LENGTH_FOR_NSN + 1)
        ),
        leading_digits=_compile_unless_none(metadata.leading_digits),
    )


def _type_patterns(metadata: PhoneMetadata, length: int) -> re.Pattern[str] | None:
    """One pattern matching what any number type ``_number_type_helper`` tries matches.

    Any type matching makes the number valid, so the types are or-ed into one
    alternation; fixed line and mobile, the common answers, come first. Mobile is
    skipped when its pattern equals the fixed-line one, exactly as the library skips it.
    """
    assert metadata.general_desc is not None
    if not _length_allowed(metadata.general_desc, length):
        return None
    descs = [metadata.fixed_line]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    descs += [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    ]
    patterns = [
        desc.national_number_pattern
        for desc in descs
        if desc is not None and desc.national_number_pattern and _length_allowed(desc, length)
    ]
    if not patterns:
        return None
    # Or-ing patterns is exact as long as no backreference can be renumbered.
    assert not any(_CAPTURING.search(pattern) for pattern in patterns), metadata.id
    return _compile("|".join(f"(?:{pattern})" for pattern in dict.fromkeys(patterns)))


#: An opening parenthesis that starts a capturing group (the metadata writes ``(?:``).
_CAPTURING = re.compile(r"(?<!\\)\((?!\?)")


def warm() -> None:
    """Compile every region's and calling code's plan now (about 0.2 s of CPU, 4 MB),
    not region by region as a list first reaches it: a worker does it once as it
    starts, before its pool forks, so no campaign's preparation pays for it."""
    for country_code in COUNTRY_CODE_TO_REGION_CODE:
        _regions_for_country_code(country_code)
        _country_code_plan(country_code)
    for region in SUPPORTED_REGIONS:
        _region_plan(region)


def _length_allowed(desc: PhoneNumberDesc, length: int) -> bool:
    """``_is_number_matching_desc``'s length test: no lengths listed means any length."""
    return not desc.possible_length or length in desc.possible_length


def _compile_unless_none(pattern: str | None) -> re.Pattern[str] | None:
    """For fields the library compiles whenever set (IDD, leading digits), even if empty."""
    return None if pattern is None else _compile(pattern)


def _compile_unless_empty(pattern: str | None) -> re.Pattern[str] | None:
    """For fields the library treats as never matching when missing or empty."""
    return _compile(pattern) if pattern else None


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    """``re_compile``, once per pattern string (regions share many patterns)."""
    return re.compile(pattern)
