"""The forecast before start (``preparation.forecast``) through the CLI on PostgreSQL:
a messy international list's dry run counted by country and pricing category with its
duplicates, opt-outs and bad rows left out, priced by a rate card; a bad rate card
refused with its line and field; a scheduled campaign's forecast in ``status``,
computed without touching the campaign."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from dispatcher.audience import suppressions
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database, Message
from dispatcher.status import CampaignState, MessageStatus

pytestmark = pytest.mark.parametrize("db", ["postgresql"], indirect=True)
runner = CliRunner()

# One person each unless said: numbers written every way a spreadsheet has them.
PEOPLE = """\
phone,bsuid,first_name
+46732601815,,Tor
0046 73 260 1815,,Tor again
004748301661,,Hanna
48609139,,Bjorn
+4915123456789,,Dirk
+44 7400 123456,,Gwen
+1 506 234 5678,,Cal
(201) 555-0123,,Uma
,SE.13491208655302741918,Sven
+46732601815,SE.99999999999999999999,Tor with a BSUID
+4791234567,,Opted out
not a number,,Bad
,,Empty
"""
#: (country, category) -> people: Tor and Sven's BSUID in SE, Hanna and Bjorn's numbers
#: (national: the default region) in NO; Uma's national number in its row's country.
EXPECTED = {
    ("SE", "marketing"): 2,
    ("NO", "marketing"): 2,
    ("DE", "marketing"): 1,
    ("GB", "marketing"): 1,
    ("CA", "marketing"): 1,
    ("US", "marketing"): 1,
}
RATES = """\
country,category,price,currency
SE,marketing,0.0595,EUR
NO,marketing,0.0630,EUR
DE,marketing,0.1365,EUR
US,*,0.0250,EUR
GB,utility,0.0220,EUR
"""
#: 2 x 0.0595 + 2 x 0.0630 + 0.1365 + 0.0250; GB and CA have no price.
TOTAL = Decimal("0.4065")


def campaign_folder(tmp_path: Path, extra: str = "", category: str | None = "marketing") -> Path:
    folder = tmp_path / "messy"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(f"""\
name: Messy list
sender: {{source: "+4790000000", level: STANDARD}}
{f"template_category: {category}" if category else ""}
message:
  type: template
  template:
    name: hello
    language: en
    components: [{{type: body, parameters: [{{type: text, text: "{{first_name}}"}}]}}]
recipients: people.csv
default_region: "NO"
{extra}""")
    # Uma's national US number needs its region: a country column, per row.
    rows = PEOPLE.replace("(201) 555-0123,,Uma", "(201) 555-0123,,Uma,US")
    header, *lines = rows.splitlines()
    body = [line if line.endswith(",US") else f"{line}," for line in lines]
    (folder / "people.csv").write_text("\n".join([f"{header},country", *body]) + "\n")
    return folder


@pytest.fixture()
def opted_out(cli_db: Database, tmp_path: Path) -> Database:
    listed = tmp_path / "optout.csv"
    listed.write_text("phone\n+4791234567\n")
    assert suppressions.add(cli_db, listed, "asked", None)[0] == 1
    return cli_db


def _app() -> Any:
    from dispatcher.interfaces.cli import app

    return app


def invoke(*args: str) -> Any:
    return runner.invoke(_app(), list(args), env={"COLUMNS": "120"})


def by_cell(document: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(r["country"], r["category"]): r["people"] for r in document["by_country_category"]}


def test_a_messy_international_list_is_forecast_by_country_and_category(
    opted_out: Database, tmp_path: Path
) -> None:
    shown = invoke("run", str(campaign_folder(tmp_path)), "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "Forecast: 8 people to send" in shown.output
    assert "no rate card" in shown.output
    with opted_out.session() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.state == "previewed"
        stored = campaign.forecast
        people = session.scalar(select(func.count()).select_from(Message))
    assert stored is not None
    assert by_cell(stored) == EXPECTED
    assert stored["people"] == people == 8
    assert stored["loaded"] == 13
    assert stored["excluded"] == {"duplicates": 2, "opted_out": 1, "rejected": 2, "capped": 0}
    assert "cost" not in stored
    for label, count in (("duplicates merged", 2), ("opted out", 1), ("rejected rows", 2)):
        line = next(row for row in shown.output.splitlines() if label in row)
        assert line.split()[-2] == str(count), line


def test_a_rate_card_prices_each_row_and_says_which_have_no_price(
    opted_out: Database, tmp_path: Path
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    shown = invoke("run", str(campaign_folder(tmp_path)), "--dry-run", "--rate-card", str(rates))
    assert shown.exit_code == 0, shown.output
    assert f"Expected cost: {TOTAL} EUR" in shown.output
    assert "Not priced: 2 people" in shown.output
    gb = next(row for row in shown.output.splitlines() if " GB " in row)
    assert "no price" in gb
    with opted_out.session() as session:
        stored = session.scalars(select(Campaign.forecast)).one()
    assert stored is not None
    cost = stored["cost"]
    assert cost["totals"] == {"EUR": str(TOTAL)}
    assert cost["unpriced_people"] == 2
    rows = {(r["country"], r["category"]): r for r in cost["rows"]}
    assert rows[("SE", "marketing")]["cost"] == "0.1190"
    assert rows[("CA", "marketing")]["price"] is None


def test_a_bad_rate_card_is_refused_with_its_line_and_field_before_anything_is_stored(
    cli_db: Database, tmp_path: Path
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("country,category,price\nSE,marketing,0.05\nNO,marketing,six cents\n")
    shown = invoke("run", str(campaign_folder(tmp_path)), "--dry-run", "--rate-card", str(rates))
    assert shown.exit_code == 1
    assert "line 3, price: 'six cents' is not a decimal number" in shown.output
    assert "Traceback" not in shown.output
    with cli_db.session() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_status_of_a_scheduled_campaign_shows_its_forecast_and_changes_nothing(
    opted_out: Database, tmp_path: Path
) -> None:
    folder = campaign_folder(tmp_path, 'send_at: "2099-01-01T09:00:00+00:00"\n')
    campaign_id = create_campaign(opted_out, load_campaign(folder))
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    shown = invoke("status", str(campaign_id), "--rate-card", str(rates))
    assert shown.exit_code == 0, shown.output
    assert "Forecast: 8 people to send (predicted" in shown.output
    assert f"Expected cost: {TOTAL} EUR" in shown.output
    as_json = invoke("status", str(campaign_id), "--json")
    assert as_json.exit_code == 0, as_json.output
    forecast = json.loads(as_json.output)[0]["forecast"]
    assert forecast["basis"] == "predicted"
    assert by_cell(forecast) == EXPECTED
    assert forecast["excluded"] == {"duplicates": 2, "opted_out": 1, "rejected": 2, "capped": 0}
    assert "cost" not in forecast  # no RATE_CARD, no --rate-card
    with opted_out.session() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        assert (campaign.state, campaign.forecast, campaign.prepared_at) == (
            "scheduled", None, None)  # fmt: skip
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_the_rate_card_setting_prices_status_and_a_bad_one_is_one_clear_line(
    opted_out: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dispatcher.settings import get_settings

    folder = campaign_folder(tmp_path, 'send_at: "2099-01-01T09:00:00+00:00"\n')
    campaign_id = create_campaign(opted_out, load_campaign(folder))
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    monkeypatch.setenv("RATE_CARD", str(rates))
    get_settings.cache_clear()
    forecast = json.loads(invoke("status", str(campaign_id), "--json").output)[0]["forecast"]
    assert forecast["cost"]["totals"] == {"EUR": str(TOTAL)}
    rates.write_text(RATES + "FR,marketing,0.1\nFR,marketing,0.2\n")
    shown = invoke("status", str(campaign_id))
    assert shown.exit_code == 1
    assert "line 8, country: FR,marketing is priced on line 7 already" in shown.output
    assert "Traceback" not in shown.output


def earlier_marketing_to(db: Database, number: str) -> None:
    """A marketing campaign of the same sender that reached ``number`` yesterday."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    with db.session() as session:
        earlier = Campaign(
            name="earlier",
            spec={"message": {"type": "template"}, "template_category": "marketing"},
            spec_path="/dev/null",
            source="+4790000000",
            state=CampaignState.COMPLETED,
            finished_at=yesterday,
        )
        session.add(earlier)
        session.flush()
        session.add(
            Message(
                campaign_id=earlier.id,
                identity_key=number,
                destination=number,
                source_line=2,
                params={},
                status=MessageStatus.DELIVERED,
                submitted_at=yesterday,
            )
        )


@pytest.mark.parametrize("scheduled", [False, True])
def test_people_over_the_frequency_cap_are_counted_apart(
    opted_out: Database, tmp_path: Path, scheduled: bool
) -> None:
    earlier_marketing_to(opted_out, "+4748301661")  # Hanna
    extra = "frequency_cap: {messages: 1, period: 7d}\n"
    if scheduled:
        extra += 'send_at: "2099-01-01T09:00:00+00:00"\n'
    folder = campaign_folder(tmp_path, extra)
    if scheduled:
        campaign_id = create_campaign(opted_out, load_campaign(folder))
        shown = invoke("status", str(campaign_id), "--json")
        assert shown.exit_code == 0, shown.output
        forecast = json.loads(shown.output)[0]["forecast"]
    else:
        shown = invoke("run", str(folder), "--dry-run")
        assert shown.exit_code == 0, shown.output
        assert "Forecast: 7 people to send" in shown.output
        with opted_out.session() as session:
            forecast = session.scalars(select(Campaign.forecast).where(
                Campaign.name == "Messy list")).one()  # fmt: skip
    assert forecast["excluded"]["capped"] == 1
    assert forecast["people"] == 7
    assert by_cell(forecast) == {**EXPECTED, ("NO", "marketing"): 1}


def test_a_template_category_nobody_states_is_unknown_or_as_the_provider_listed_it(
    opted_out: Database, tmp_path: Path
) -> None:
    folder = campaign_folder(tmp_path, 'send_at: "2099-01-01T09:00:00+00:00"\n', None)
    campaign_id = create_campaign(opted_out, load_campaign(folder))

    def categories() -> set[str]:
        shown = invoke("status", str(campaign_id), "--json")
        assert shown.exit_code == 0, shown.output
        return {row["category"] for row in json.loads(shown.output)[0]["forecast"]
                ["by_country_category"]}  # fmt: skip

    assert categories() == {"unknown"}  # a dry run asks the provider nothing
    with opted_out.session() as session:  # an earlier campaign's pre-flight learned it
        session.add(
            Campaign(
                name="earlier",
                spec={
                    "message": {"type": "template", "template": {"name": "hello"}},
                    "template_category": "utility",
                },
                spec_path="/dev/null",
                source="+4790000000",
                state=CampaignState.COMPLETED,
                prepared_at=datetime.now(UTC),
            )
        )
    assert categories() == {"utility"}
