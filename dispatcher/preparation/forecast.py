"""The forecast before a campaign starts: who would be sent, where, in which Meta pricing
category, and (with a rate card) at what expected cost.

Two ways to it, one result (``Forecast``):

* ``from_stored``: after a dry run (``dispatcher run --dry-run``) the campaign's people
  are stored as messages and its rejects report is stored: counted from there, so the
  forecast is exactly what the dry run wrote (frequency-capped people are the messages
  skipped with ``SkipReason.FREQUENCY_CAP``);
* ``predict``: a scheduled campaign not yet prepared: the audience passes, the identity
  book, opt-out and frequency-cap look-ups and the composing rules of preparation run
  read-only (the same functions preparation runs), nothing is written and the campaign
  is unchanged. The cap is judged as of now: the portfolio may send more before the
  campaign starts.

Country is where Meta prices a message: the region of the person's phone number
(``phonenumbers``; the destination's, else another number the person is known by); a
person known only by a BSUID: the two-letter country code a BSUID starts with (seed 004
'BSUID': "SE represents Sweden country code"), else ``unknown (BSUID)``. Not the
list's country column: that says how to read a national number, and both ways to the
forecast must agree (a dry run's stored messages do not keep the row).

Category is Meta's pricing category: a template's category as the spec gives it, else
as pre-flight learned it from the provider's template list for an earlier campaign of
the sender (stored on that campaign), else ``unknown`` (never guessed); a non-template
message is only sent inside the customer care window, where it is ``service``.

The rate card is the operator's own CSV (``RATE_CARD`` or ``--rate-card``); none is
shipped, and a row the card has no price for is said to have none.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.audience.passes import SUPPRESSED, Audience
from dispatcher.audience.recipients import Reject, normalise_header
from dispatcher.campaigns import inputs
from dispatcher.campaigns.spec import CampaignSpec, LoadedCampaign
from dispatcher.db import Campaign, Database, Message
from dispatcher.errors import ConfigurationError, DispatcherError
from dispatcher.status import CampaignState

#: Meta's pricing categories (per-message pricing), and the wildcard of a rate card.
CATEGORIES = ("marketing", "utility", "authentication", "service")
ANY = "*"
UNKNOWN_CATEGORY = "unknown"
UNKNOWN_BSUID = "unknown (BSUID)"
UNKNOWN_COUNTRY = "unknown"
#: ``SkipReason.FREQUENCY_CAP``'s stored value (``dispatcher.status``), named here so the
#: count works whether or not that reason exists yet in this checkout.
FREQUENCY_CAP = "frequency_cap"
STORED = "dry run"
PREDICTED = "predicted"


# --- the forecast -------------------------------------------------------------------


@dataclass(slots=True)
class Forecast:
    """People who would be sent, by (country, category), and who would not, and why."""

    groups: dict[tuple[str, str], int] = field(default_factory=dict)
    loaded: int = 0  # rows read
    duplicates: int = 0  # rows merged into an earlier row of their person
    opted_out: int = 0  # people on the opt-out list
    rejected: int = 0  # rows not usable (bad number, outside the care window, ...)
    capped: int = 0  # people over the frequency cap
    basis: str = STORED
    computed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def people(self) -> int:
        return sum(self.groups.values())

    def add(self, country: str, category: str, count: int = 1) -> None:
        key = (country, category)
        self.groups[key] = self.groups.get(key, 0) + count

    def rows(self) -> list[tuple[str, str, int]]:
        """(country, category, people), most people first."""
        return sorted(
            ((c, k, n) for (c, k), n in self.groups.items()), key=lambda r: (-r[2], r[0], r[1])
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON (``Campaign.forecast``, ``status --json``)."""
        return {
            "basis": self.basis,
            "computed_at": self.computed_at.isoformat(),
            "loaded": self.loaded,
            "people": self.people,
            "excluded": {
                "duplicates": self.duplicates,
                "opted_out": self.opted_out,
                "rejected": self.rejected,
                "capped": self.capped,
            },
            "by_country_category": [
                {"country": c, "category": k, "people": n} for c, k, n in self.rows()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Forecast:
        excluded = data.get("excluded", {})
        found = cls(
            loaded=int(data.get("loaded", 0)),
            duplicates=int(excluded.get("duplicates", 0)),
            opted_out=int(excluded.get("opted_out", 0)),
            rejected=int(excluded.get("rejected", 0)),
            capped=int(excluded.get("capped", 0)),
            basis=str(data.get("basis", STORED)),
            computed_at=datetime.fromisoformat(data["computed_at"]),
        )
        for row in data.get("by_country_category", []):
            found.add(row["country"], row["category"], int(row["people"]))
        return found


def category_of(spec: CampaignSpec, learned: str | None = None) -> str:
    """Meta's pricing category of the campaign's messages (module docstring); ``learned``:
    the provider's category of the template, when the spec does not say."""
    if not spec.is_template:
        return "service"
    if spec.template_category is not None:
        return spec.template_category.value
    return learned or UNKNOWN_CATEGORY


#: Earlier campaigns of the sender looked at for a template's learned category.
_LEARNED_FROM = 50


def learned_category(session: Session, spec: CampaignSpec) -> str | None:
    """The template's category as pre-flight learned it from the provider's template list
    for an earlier campaign of the same sender (stored on that campaign's spec), when
    this spec does not say. A dry run asks the provider nothing; a campaign that sent did."""
    if not spec.is_template or spec.template_category is not None:
        return None
    name = (spec.message.get("template") or {}).get("name")
    rows = session.scalars(
        select(Campaign.spec)
        .where(
            Campaign.source == spec.sender.source,
            Campaign.prepared_at.is_not(None),
            Campaign.state != CampaignState.PREVIEWED,
        )
        .order_by(Campaign.id.desc())
        .limit(_LEARNED_FROM)
    )
    for earlier in rows:
        message = (earlier or {}).get("message") or {}
        template = message.get("template") if isinstance(message, dict) else None
        category = (earlier or {}).get("template_category")
        if isinstance(template, dict) and template.get("name") == name and category in CATEGORIES:
            return str(category)
    return None


def _single_region_codes() -> dict[int, str]:
    return {
        code: regions[0]
        for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        if len(regions) == 1 and regions[0] != "001"
    }


_SINGLE = _single_region_codes()
_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


#: A shared code's region is told by the first national digits of the number: NANP's
#: area code (+1 416: CA), Kazakhstan's 6/7 under +7, and within six digits the Channel
#: Islands' and Man's ranges of +44 (7781, 762450...), Christmas Island's of +61
#: (89164), the Vatican's of +39 (06698): one parse per range, not per number.
_RANGE_DIGITS = {1: 3, 7: 3}
_DEFAULT_RANGE_DIGITS = 6
_shared: dict[str, str | None] = {}
_SHARED_KEPT = 200_000


def calling_code(number: str) -> int | None:
    """The country calling code of an E.164 number (codes are prefix-free)."""
    digits = number[1:4]
    for size in (1, 2, 3):
        if digits[:size].isdigit() and int(digits[:size]) in _CODES:
            return int(digits[:size])
    return None


def range_of(code: int) -> int:
    """Characters of an E.164 number that tell a region under ``code`` (``+``, code,
    the national digits that matter)."""
    return 1 + len(str(code)) + _RANGE_DIGITS.get(code, _DEFAULT_RANGE_DIGITS)


def region_of_number(number: str) -> str | None:
    """The ISO region of an E.164 number. Most country calling codes belong to one
    region and need no parse; shared ones (+1, +7, +44...) are parsed once per range of
    numbers (a parse takes 0.2-0.3 ms: a million of them would take minutes)."""
    code = calling_code(number)
    if code is None:
        return None
    if code in _SINGLE:
        return _SINGLE[code]
    key = number[: range_of(code)]
    if key in _shared:
        return _shared[key]
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return None
    found = region if region and region != "ZZ" else None
    if found is not None:  # an invalid number says nothing of its range
        if len(_shared) >= _SHARED_KEPT:
            _shared.clear()
        _shared[key] = found
    return found


def country_of(destination: str, identifiers: Iterable[str] = ()) -> str:
    """Where a message to ``destination`` is priced (module docstring)."""
    if destination.startswith("+"):
        return region_of_number(destination) or UNKNOWN_COUNTRY
    for identifier in identifiers:  # a person sent to by BSUID may have a number too
        if identifier.startswith("+") and (region := region_of_number(identifier)):
            return region
    prefix = destination.split(".", 1)[0].upper()
    return prefix if prefix in phonenumbers.SUPPORTED_REGIONS else UNKNOWN_BSUID


# --- after a dry run: from what it stored -------------------------------------------


def from_stored(db: Database, campaign_id: int) -> Forecast:
    """The forecast of a prepared (previewed) campaign, from its stored messages and
    rejects report."""
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise DispatcherError(f"no campaign {campaign_id}")
        spec = CampaignSpec.model_validate(campaign.spec)
        found = Forecast(loaded=campaign.loaded, duplicates=campaign.duplicates, basis=STORED)
        category = category_of(spec, learned_category(session, spec))
        by_country: Counter[str] = Counter()
        mine = Message.campaign_id == campaign_id
        reason = func.coalesce(Message.skip_reason, "")
        # Phone numbers counted by the database: per calling code, and per range under
        # a shared one (``region_of_number``): a million messages are a few hundred
        # rows here (a few thousand for +1 or +44), and no message's identifiers are read.
        phone = (mine, Message.destination.startswith("+"))
        codes: Counter[int] = Counter()
        head = func.substr(Message.destination, 1, 4)  # "+" and the longest code
        for start, skipped, count in session.execute(
            select(head, reason, func.count()).where(*phone).group_by(head, reason)
        ):
            code = calling_code(start)
            if skipped == FREQUENCY_CAP:
                found.capped += count
            elif code is None:
                by_country[UNKNOWN_COUNTRY] += count
            elif code in _SINGLE:
                by_country[_SINGLE[code]] += count
            else:
                codes[code] += count
        for code in codes:
            ranges = func.substr(Message.destination, 1, range_of(code))
            for number, count in session.execute(
                select(func.min(Message.destination), func.count())
                .where(*phone, Message.destination.startswith(f"+{code}"), reason != FREQUENCY_CAP)
                .group_by(ranges)
            ):
                by_country[region_of_number(number) or UNKNOWN_COUNTRY] += count
        bsuids = session.execute(
            select(Message.destination, Message.identifiers, Message.skip_reason)
            .where(mine, ~Message.destination.startswith("+"))
            .execution_options(yield_per=10_000)
        )
        for destination, identifiers, skip_reason in bsuids:
            if skip_reason == FREQUENCY_CAP:
                found.capped += 1
            else:
                by_country[country_of(destination, identifiers or ())] += 1
        rejected = campaign.rejected
    for country, count in by_country.items():
        found.add(country, category, count)
    buffer = io.BytesIO()
    if inputs.fetch_report(db, campaign_id, inputs.REJECTS, buffer):
        reasons = Counter(_reasons(buffer.getvalue()))
        found.opted_out = reasons[SUPPRESSED]
        found.rejected = sum(reasons.values()) - found.opted_out
    else:
        found.rejected = rejected
    return found


def _reasons(report: bytes) -> Iterator[str]:
    """The reason column of a rejects report (``reports.write_rejects``)."""
    reader = csv.reader(io.StringIO(report.decode("utf-8"), newline=""))
    header = next(reader, [])
    if "reason" not in header:
        return
    at = header.index("reason")
    for row in reader:
        yield row[at] if at < len(row) else ""


# --- a scheduled campaign: predicted, read-only --------------------------------------


def predict(db: Database, campaign_id: int) -> Forecast:
    """The forecast of a campaign not yet prepared: preparation's own passes and
    look-ups, read-only (nothing written, the campaign unchanged)."""
    from dispatcher.preparation import media
    from dispatcher.preparation.batching import members
    from dispatcher.preparation.prepare import _capped, _lookups
    from dispatcher.settings import get_settings

    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise DispatcherError(f"no campaign {campaign_id}")
        spec = CampaignSpec.model_validate(campaign.spec)
        loaded = LoadedCampaign(spec=spec, spec_path=Path(campaign.spec_path))
        category = category_of(spec, learned_category(session, spec))
    found = Forecast(basis=PREDICTED)
    with inputs.materialized(db, campaign_id, loaded) as fetched, Audience(
        fetched.recipient_files(), spec.default_region, spec.columns.names(), spec.send_to
    ) as audience:  # fmt: skip
        audience.scan()
        portfolio = get_settings().portfolio_name(spec.sender.source)
        known = _lookups(db, campaign_id, spec, audience, portfolio, resuming=False)
        # As a dry run does: no portfolio lock (nothing is written), capped people are
        # collected in ``known.over_cap`` instead of being yielded.
        with contextlib.ExitStack() as unlocked:
            known.capped = _capped(db, campaign_id, spec, audience, unlocked, dry_run=True)
        later = 0
        for item in members(spec, audience, known, media.stand_in_media(fetched)):
            if isinstance(item, Reject):
                if item.reason == SUPPRESSED:
                    found.opted_out += 1
                else:
                    later += 1
                continue
            _, destination, identifiers, _, _ = item[2]
            found.add(country_of(destination, identifiers), category)
        found.capped = len(known.over_cap)
        found.loaded = audience.loaded
        found.duplicates = audience.duplicates
        found.rejected = audience.rejected + later
    return found


def forecast_of(db: Database, campaign_id: int) -> Forecast | None:
    """What ``status`` shows: a scheduled campaign's predicted now, else the stored one
    (a dry run's), else None."""
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise DispatcherError(f"no campaign {campaign_id}")
        state, stored = campaign.state, campaign.forecast
    if state == "scheduled":
        return predict(db, campaign_id)
    return Forecast.from_dict(stored) if stored else None


def store(db: Database, campaign_id: int, forecast: Forecast, costing: Costing | None) -> None:
    """Keep the forecast (and its cost, when a rate card priced it) on the campaign."""
    document = forecast.as_dict()
    if costing is not None:
        document["cost"] = costing.as_dict()
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            campaign.forecast = document


# --- rate card and cost -------------------------------------------------------------


class RateCardError(ConfigurationError):
    """A rate card file that cannot be read: says which file, line and field."""


@dataclass(frozen=True, slots=True)
class Price:
    amount: Decimal
    currency: str  # "" when the card has no currency column (or leaves it blank)
    line: int  # the card's line it came from


@dataclass(slots=True)
class RateCard:
    """Prices per (country, category); ``*`` stands for any country or category."""

    path: Path
    prices: dict[tuple[str, str], Price]

    def price(self, country: str, category: str) -> Price | None:
        """The most specific price: exact, then any category of the country, then the
        category in any country, then anything."""
        for key in ((country, category), (country, ANY), (ANY, category), (ANY, ANY)):
            found = self.prices.get(key)
            if found is not None:
                return found
        return None


_COLUMNS = ("country", "category", "price")


def load_rate_card(path: Path) -> RateCard:
    """Read a rate card CSV: header ``country,category,price`` and, optionally,
    ``currency``; other columns are ignored (a spreadsheet's notes).

    * country: an ISO 3166 two-letter code (``NO``, ``us``) or ``*`` (any country);
    * category: marketing, utility, authentication, service, or ``*`` (any);
    * price: a decimal number, not negative (``0.0625``; a comma is not a decimal point);
    * currency: three letters (``EUR``) or blank. Totals are kept per currency: prices
      of different currencies are never added.

    One line per (country, category). Raises ``RateCardError`` naming the line and the
    field."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RateCardError(f"rate card {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise RateCardError(f"rate card {path}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise RateCardError(f"rate card {path}: empty (wants a header: country,category,price)")
    names = [normalise_header(name) for name in header]
    missing = [name for name in _COLUMNS if name not in names]
    if missing:
        raise RateCardError(
            f"rate card {path} line 1: no column {', '.join(missing)} (wants a header: "
            "country,category,price and optionally currency)"
        )
    at = {name: names.index(name) for name in (*_COLUMNS, "currency") if name in names}
    prices: dict[tuple[str, str], Price] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"rate card {path} line {reader.line_num}"
        if len(row) > len(header):
            # "0,05" unquoted: a decimal comma would silently price the line at 0.
            raise RateCardError(
                f"{where}, price: {len(row)} fields where the header has {len(header)} "
                "(a decimal comma? write 0.05, or quote the price)"
            )
        cells = {name: row[i].strip() if i < len(row) else "" for name, i in at.items()}
        key, price = _priced(cells, where, reader.line_num)
        earlier = prices.get(key)
        if earlier is not None:
            raise RateCardError(
                f"{where}, country: {key[0]},{key[1]} is priced on line {earlier.line} already"
            )
        prices[key] = price
    return RateCard(path, prices)


def _priced(cells: dict[str, str], where: str, line: int) -> tuple[tuple[str, str], Price]:
    """One line of a rate card, checked field by field."""

    def bad(name: str, problem: str) -> RateCardError:
        return RateCardError(f"{where}, {name}: {problem}")

    country = cells["country"].upper()
    if country != ANY and country not in phonenumbers.SUPPORTED_REGIONS:
        raise bad("country", f"{cells['country']!r} is not an ISO country code (NO, SE) or *")
    category = cells["category"].lower()
    if category != ANY and category not in CATEGORIES:
        raise bad("category", f"{cells['category']!r} is not one of {', '.join(CATEGORIES)} or *")
    amount = _amount(cells["price"])
    if amount is None:
        raise bad("price", f"{cells['price']!r} is not a decimal number (0.0625)")
    if amount < 0:
        raise bad("price", f"{cells['price']!r} is negative")
    currency = cells.get("currency", "").upper()
    if currency and not (len(currency) == 3 and currency.isalpha()):
        raise bad("currency", f"{cells['currency']!r} is not a three-letter code (EUR)")
    return (country, category), Price(amount, currency, line)


def _amount(text: str) -> Decimal | None:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


@dataclass(frozen=True, slots=True)
class CostRow:
    country: str
    category: str
    people: int
    price: Price | None  # None: the card has no price for it

    @property
    def cost(self) -> Decimal | None:
        return None if self.price is None else self.price.amount * self.people


@dataclass(slots=True)
class Costing:
    """A forecast priced by a rate card: per row, totals per currency, what is unpriced."""

    card: Path
    rows: list[CostRow]

    @property
    def totals(self) -> dict[str, Decimal]:
        found: dict[str, Decimal] = {}
        for row in self.rows:
            if row.price is not None and row.cost is not None:
                found[row.price.currency] = found.get(row.price.currency, Decimal(0)) + row.cost
        return found

    @property
    def unpriced(self) -> int:
        """People in rows the card has no price for."""
        return sum(row.people for row in self.rows if row.price is None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate_card": str(self.card),
            "rows": [
                {
                    "country": row.country,
                    "category": row.category,
                    "people": row.people,
                    "price": None if row.price is None else str(row.price.amount),
                    "currency": None if row.price is None else row.price.currency,
                    "cost": None if row.cost is None else str(row.cost),
                }
                for row in self.rows
            ],
            "totals": {currency: str(total) for currency, total in self.totals.items()},
            "unpriced_people": self.unpriced,
        }


def cost(forecast: Forecast, card: RateCard) -> Costing:
    """The expected cost of each (country, category) row of the forecast."""
    return Costing(
        card.path,
        [CostRow(c, k, n, card.price(c, k)) for c, k, n in forecast.rows()],
    )
