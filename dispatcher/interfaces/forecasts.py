"""The forecast on the terminal: ``dispatcher run --dry-run`` and ``dispatcher status N``
of a scheduled or previewed campaign (``dispatcher.preparation.forecast``, imported
when used: other commands do not wait for the audience passes and phonenumbers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from dispatcher.db import Database
from dispatcher.interfaces.terminal import console, say
from dispatcher.settings import get_settings

if TYPE_CHECKING:
    from dispatcher.preparation import forecast as fc


def rate_card(option: Path | None) -> fc.RateCard | None:
    """``--rate-card``, else ``RATE_CARD``, else none (no card is shipped)."""
    from dispatcher.preparation import forecast as fc

    path = option or get_settings().rate_card
    return fc.load_rate_card(path) if path is not None else None


def after_dry_run(db: Database, campaign_id: int, card: fc.RateCard | None) -> None:
    """Count the dry run's stored people, keep the forecast on the campaign, show it."""
    from dispatcher.preparation import forecast as fc

    found = fc.from_stored(db, campaign_id)
    costing = fc.cost(found, card) if card is not None else None
    fc.store(db, campaign_id, found, costing)
    show(found, costing)


def as_json(found: fc.Forecast, costing: fc.Costing | None) -> dict[str, Any]:
    document = found.as_dict()
    if costing is not None:
        document["cost"] = costing.as_dict()
    return document


def show(found: fc.Forecast, costing: fc.Costing | None) -> None:
    console.print(view(found, costing))
    if costing is None:
        say(("Cost: ", "bold"), "no rate card (RATE_CARD or --rate-card FILE: CSV "
            "country,category,price[,currency])")  # fmt: skip
        return
    totals = costing.totals
    shown = ", ".join(f"{_money(total)} {currency}".strip() for currency, total in totals.items())
    say(("Expected cost: ", "bold"), shown or "nothing priced", f" (rate card {costing.card})")
    if costing.unpriced:
        say(("Not priced: ", "yellow"), f"{costing.unpriced} people in rows the rate card has "
            "no price for (not counted in the cost)")  # fmt: skip


def view(found: fc.Forecast, costing: fc.Costing | None) -> Table:
    from dispatcher.preparation.forecast import PREDICTED

    when = f"{found.computed_at:%Y-%m-%d %H:%M} UTC"
    basis = (
        "predicted now from the stored list, the identity book and the opt-outs"
        if found.basis == PREDICTED
        else f"as the dry run stored it, {when}"
    )
    table = Table(title=Text(f"Forecast: {found.people} people to send ({basis})"))
    table.add_column("country")
    table.add_column("category")
    table.add_column("people", justify="right")
    if costing is not None:
        table.add_column("price", justify="right")
        table.add_column("cost", justify="right")
        for row in costing.rows:
            price, amount = row.price, row.cost
            table.add_row(
                row.country,
                row.category,
                str(row.people),
                "no price" if price is None else f"{price.amount} {price.currency}".strip(),
                "-"
                if price is None or amount is None
                else f"{_money(amount)} {price.currency}".strip(),
            )
    else:
        for country, category, people in found.rows():
            table.add_row(country, category, str(people))
    table.add_section()
    excluded = (
        ("duplicates merged", found.duplicates),
        ("opted out", found.opted_out),
        ("rejected rows", found.rejected),
        ("frequency cap", found.capped),
    )
    for label, count in excluded:
        table.add_row(Text(f"excluded: {label}", style="dim"), "", str(count))
    table.caption = f"{found.loaded} rows read"
    return table


def _money(amount: Any) -> str:
    """Two decimals at least, more when the prices have them (0.0625 x 3 = 0.1875)."""
    text = f"{amount:f}"
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0")
    return f"{whole}.{decimals.ljust(2, '0')}"
