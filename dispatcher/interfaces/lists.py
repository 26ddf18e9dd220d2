"""``dispatcher schedule`` and ``dispatcher suppress``: the recurring campaigns and the
opt-out list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from dispatcher.errors import DispatcherError
from dispatcher.interfaces.terminal import console, friendly, local_db, print_rejects

schedule_app = typer.Typer(
    no_args_is_help=True,
    help="Recurring campaigns: a campaign folder sent again at every cron time (needs "
    "beat: `celery -A workers beat`), each run a campaign of its own.",
)


@schedule_app.command("add")
@friendly
def schedule_add(
    path: Annotated[Path, typer.Argument(help="campaign folder or spec file")],
    cron: Annotated[str, typer.Option(help='cron expression, e.g. "0 9 * * MON"')],
    timezone: Annotated[str, typer.Option(help="time zone of the cron times")] = "UTC",
) -> None:
    """Send PATH at every CRON time (the folder is read afresh each run)."""
    from datetime import UTC, datetime

    from dispatcher.campaigns import schedules

    with local_db().session() as session:
        made = schedules.add(session, path, cron, timezone, datetime.now(UTC))
        schedule_id, first = made.id, made.next_run_at
    console.print(f"Schedule {schedule_id}: {path} at {cron!r} ({timezone}); first run "
                  f"{first:%Y-%m-%d %H:%M} UTC.")  # fmt: skip


@schedule_app.command("list")
@friendly
def schedule_list() -> None:
    """Every schedule, its next run and how the last went."""
    from dispatcher.db import Schedule

    table = Table(title="Schedules")
    for column in ("id", "path", "cron", "zone", "next run (UTC)", "last campaign", "last error"):
        table.add_column(column, overflow="fold")
    with local_db().session() as session:
        for s in session.scalars(select(Schedule).order_by(Schedule.id)):
            nxt = f"{s.next_run_at:%Y-%m-%d %H:%M}" if s.enabled else "stopped"
            table.add_row(str(s.id), s.path, s.cron, s.timezone, nxt,
                          str(s.last_campaign_id or ""), s.last_error or "")  # fmt: skip
    console.print(table)


@schedule_app.command("remove")
@friendly
def schedule_remove(schedule_id: Annotated[int, typer.Argument(help="the schedule")]) -> None:
    """Stop a recurring campaign (campaigns it started are not touched)."""
    from dispatcher.db import Schedule

    with local_db().session() as session:
        found = session.get(Schedule, schedule_id)
        if found is None:
            raise DispatcherError(f"no schedule {schedule_id}")
        session.delete(found)
    console.print(f"Schedule {schedule_id} removed.")


suppress_app = typer.Typer(
    no_args_is_help=True,
    help="The opt-out list: people on it are never messaged (matched through identity "
    "resolution, so a phone number's opt-out covers that user's BSUID too).",
)


@suppress_app.command("add")
@friendly
def suppress_add(
    file: Annotated[Path, typer.Argument(help="CSV with a phone/bsuid column (as recipients)")],
    reason: Annotated[str, typer.Option(help="why, kept with each entry")] = "opted out",
    region: Annotated[
        str | None, typer.Option(help="ISO country for numbers without a country code")
    ] = None,
) -> None:
    """Add every identifier in FILE to the opt-out list."""
    from dispatcher.audience import suppressions

    db = local_db()
    added, rejects = suppressions.add(db, file, reason, region)
    console.print(f"Suppressed {added} identifier(s) from {file.name}.")
    print_rejects(rejects)


@suppress_app.command("remove")
@friendly
def suppress_remove(
    file: Annotated[Path, typer.Argument(help="CSV with a phone/bsuid column (as recipients)")],
    region: Annotated[
        str | None, typer.Option(help="ISO country for numbers without a country code")
    ] = None,
) -> None:
    """Take every identifier in FILE off the opt-out list."""
    from dispatcher.audience import suppressions

    db = local_db()
    removed, rejects = suppressions.remove(db, file, region)
    console.print(f"Removed {removed} identifier(s) from the opt-out list.")
    print_rejects(rejects)


@suppress_app.command("list")
@friendly
def suppress_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show the opt-out list (phone numbers masked unless --json)."""
    from dispatcher.audience import suppressions
    from dispatcher.masking import mask

    entries = suppressions.entries(local_db())
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    table = Table(title=f"Opt-out list ({len(entries)})")
    for column in ("identifier", "reason", "since"):
        table.add_column(column)
    for entry in entries:
        table.add_row(mask(entry.identifier), entry.reason, f"{entry.created_at:%Y-%m-%d %H:%M}")
    console.print(table)
