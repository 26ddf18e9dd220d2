"""The forecast's rate card and arithmetic (``preparation.forecast``): a card read line
by line with errors that name the line and field, prices exact to the last decimal,
currencies never added together, and where a message is priced."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.errors import ConfigurationError
from dispatcher.preparation import forecast as fc


def card(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "rates.csv"
    path.write_text(text, encoding=encoding)
    return path


def test_a_card_reads_countries_categories_wildcards_and_currencies(tmp_path: Path) -> None:
    loaded = fc.load_rate_card(card(tmp_path, (
        "Country,Category,Price,Currency,note\n"
        "se,Marketing,0.0595,eur,Sweden\n"
        "\n"
        "SE,*,0.03,EUR,\n"
        "*,utility,0.01,usd,\n"
        "*,*,1,,\n"
    ), encoding="utf-8-sig"))  # fmt: skip
    assert loaded.price("SE", "marketing") == fc.Price(Decimal("0.0595"), "EUR", 2)
    assert loaded.price("SE", "service") == fc.Price(Decimal("0.03"), "EUR", 4)
    assert loaded.price("NO", "utility") == fc.Price(Decimal("0.01"), "USD", 5)
    assert loaded.price("NO", "marketing") == fc.Price(Decimal("1"), "", 6)
    assert loaded.price(fc.UNKNOWN_BSUID, "utility") == fc.Price(Decimal("0.01"), "USD", 5)


def test_without_a_wildcard_a_row_has_no_price(tmp_path: Path) -> None:
    loaded = fc.load_rate_card(card(tmp_path, "country,category,price\nSE,marketing,0.05\n"))
    assert loaded.price("NO", "marketing") is None
    assert loaded.price("SE", "utility") is None
    assert loaded.price("SE", fc.UNKNOWN_CATEGORY) is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("country,category,price\nSE,marketing,0.05\nXQ,marketing,1\n",
         "line 3, country: 'XQ' is not an ISO country code"),
        ("country,category,price\nSE,promo,0.05\n",
         "line 2, category: 'promo' is not one of marketing, utility, authentication, service"),
        ("country,category,price\nSE,marketing,cheap\n",
         "line 2, price: 'cheap' is not a decimal number"),
        ("country,category,price\nSE,marketing,\"0,05\"\n",
         "line 2, price: '0,05' is not a decimal number"),
        ("country,category,price\nSE,marketing,0,05\n",
         "line 2, price: 4 fields where the header has 3 (a decimal comma?"),
        ("country,category,price\nSE,marketing,-0.01\n", "line 2, price: '-0.01' is negative"),
        ("country,category,price\nSE,marketing,NaN\n", "line 2, price: 'NaN' is not a decimal"),
        ("country,category,price,currency\nSE,marketing,1,euro\n",
         "line 2, currency: 'euro' is not a three-letter code"),
        ("country,category,price\nSE,marketing,1\n\nse,MARKETING,2\n",
         "line 4, country: SE,marketing is priced on line 2 already"),
        ("country,price\nSE,1\n", "line 1: no column category"),
        ("", "empty"),
    ],
)  # fmt: skip
def test_a_bad_card_says_which_line_and_field(tmp_path: Path, text: str, said: str) -> None:
    path = card(tmp_path, text)
    with pytest.raises(fc.RateCardError) as raised:
        fc.load_rate_card(path)
    assert said in str(raised.value)
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, ConfigurationError)  # shown as one line, exit 1


def test_a_missing_card_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(fc.RateCardError, match="cannot be read"):
        fc.load_rate_card(tmp_path / "nowhere.csv")


def test_cost_is_exact_decimal_per_row_with_totals_per_currency(tmp_path: Path) -> None:
    loaded = fc.load_rate_card(card(tmp_path, (
        "country,category,price,currency\n"
        "SE,marketing,0.1,EUR\n"
        "NO,marketing,0.0625,EUR\n"
        "US,*,0.025,USD\n"
    )))  # fmt: skip
    found = fc.Forecast()
    found.add("SE", "marketing", 3)
    found.add("NO", "marketing", 7)
    found.add("US", "utility", 4)
    found.add("GB", "marketing", 5)
    costing = fc.cost(found, loaded)
    by_country = {row.country: row for row in costing.rows}
    assert by_country["SE"].cost == Decimal("0.3")  # not 0.30000000000000004
    assert by_country["NO"].cost == Decimal("0.4375")
    assert by_country["GB"].price is None and by_country["GB"].cost is None
    assert costing.totals == {"EUR": Decimal("0.7375"), "USD": Decimal("0.100")}
    assert costing.unpriced == 5
    document = costing.as_dict()
    assert document["totals"] == {"EUR": "0.7375", "USD": "0.100"}
    assert document["unpriced_people"] == 5
    assert {"country": "GB", "category": "marketing", "people": 5, "price": None,
            "currency": None, "cost": None} in document["rows"]  # fmt: skip


@pytest.mark.parametrize(
    ("destination", "identifiers", "country"),
    [
        ("+46732601815", (), "SE"),
        ("+4748301661", (), "NO"),
        ("+12015550123", (), "US"),
        ("+15062345678", (), "CA"),  # +1 is shared: read by area code
        ("+447400123456", (), "GB"),
        # Shared codes are told apart by range (one parse per range, then remembered).
        ("+447624501234", (), "IM"),
        ("+447911123456", (), "GG"),
        ("+447797123456", (), "JE"),
        ("+18765550123", (), "JM"),
        ("+77012345678", (), "KZ"),
        ("+74951234567", (), "RU"),
        ("+3906698123", (), "VA"),
        ("+61891641234", (), "CX"),
        ("SE.13491208655302741918", (), "SE"),  # the BSUID's own country code
        ("US.13491208655302741918", ("+4748301661",), "NO"),  # the person's number first
        ("ZZ.13491208655302741918", (), fc.UNKNOWN_BSUID),
        ("+999123", (), fc.UNKNOWN_COUNTRY),
    ],
)
def test_where_a_message_is_priced(
    destination: str, identifiers: tuple[str, ...], country: str
) -> None:
    assert fc.country_of(destination, identifiers) == country


def spec_of(message: dict[str, object], category: str | None = None) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "x",
            "sender": {"source": "+4790000000"},
            "message": message,
            "recipients": "people.csv",
            **({"template_category": category} if category else {}),
        }
    )


def test_the_pricing_category_is_the_templates_or_service() -> None:
    template: dict[str, object] = {
        "type": "template",
        "template": {"name": "hello", "language": "en"},
    }
    assert fc.category_of(spec_of(template, "utility")) == "utility"
    assert fc.category_of(spec_of(template)) == fc.UNKNOWN_CATEGORY  # nobody said: not invented
    assert fc.category_of(spec_of({"type": "text", "text": {"body": "hi"}})) == "service"


def test_a_forecast_survives_its_json() -> None:
    found = fc.Forecast(loaded=9, duplicates=1, opted_out=2, rejected=3, capped=1)
    found.add("SE", "marketing", 2)
    found.add(fc.UNKNOWN_BSUID, "marketing")
    again = fc.Forecast.from_dict(found.as_dict())
    assert again.as_dict() == found.as_dict()
    assert again.people == 3


def test_a_range_once_told_is_remembered_and_other_ranges_still_parsed() -> None:
    fc._shared.clear()
    assert fc.region_of_number("+447624501234") == "IM"
    assert fc._shared == {"+44762450": "IM"}
    assert fc.region_of_number("+447624509999") == "IM"
    assert fc.region_of_number("+447400123456") == "GB"
    assert fc.region_of_number("+14165550199") == "CA"
    assert set(fc._shared) == {"+44762450", "+44740012", "+1416"}
