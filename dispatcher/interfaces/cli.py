"""``dispatcher`` command line (Typer + Rich).

Commands import the heavier stages (spec models, LINK client, workers) when they run:
``dispatcher status`` should not wait for what only ``dispatcher run`` uses.
"""

from __future__ import annotations

import gc
import json
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from dispatcher.db import Campaign, Database, migrate
from dispatcher.errors import ConfigurationError, DispatcherError
from dispatcher.interfaces import forecasts, running
from dispatcher.interfaces.console import overview
from dispatcher.interfaces.keys import keys_app
from dispatcher.interfaces.lists import schedule_app, suppress_app
from dispatcher.interfaces.terminal import (
    console,
    friendly,
    local_database_url,
    local_db,
    say,
)
from dispatcher.operations import control, progress
from dispatcher.settings import Settings, get_settings

if TYPE_CHECKING:
    from dispatcher.preparation.forecast import Costing, Forecast

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Bulk WhatsApp campaigns through the LINK Mobility WhatsApp Message API.",
)


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
    rate_card: Annotated[
        Path | None,
        typer.Option(
            "--rate-card",
            help="with --dry-run: CSV country,category,price[,currency] pricing the "
            "forecast (default: RATE_CARD)",
        ),
    ] = None,
    open_console: Annotated[
        bool,
        typer.Option(
            "--open",
            help="embedded default: open the web console in a browser, and keep it up "
            "after the campaign until Ctrl-C",
        ),
    ] = False,
) -> None:
    """Prepare and send a campaign, showing progress until every message has an outcome.

    Exits 0 when every person loaded was accepted and none failed (rejected rows and
    merged duplicates are not failures), 1 when refused before sending, 3 when some
    people were not sent, 4 when nobody was, 5 when it stopped following first."""
    running.run_campaign(
        path,
        detach=detach,
        timeout=timeout,
        preview=dry_run,
        again=again,
        rate_card=rate_card,
        open_console=open_console,
    )


@app.command(short_help="Campaigns and their progress.")
@friendly
def status(
    campaign_id: Annotated[int | None, typer.Argument(help="one campaign")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="keep the view live (Ctrl-C to stop)")
    ] = False,
    rate_card: Annotated[
        Path | None,
        typer.Option(
            "--rate-card",
            help="CSV country,category,price[,currency] pricing one campaign's forecast "
            "(default: RATE_CARD)",
        ),
    ] = None,
) -> None:
    """Campaigns and their progress (from the database); one scheduled or previewed
    campaign with its forecast (a scheduled one's computed now, without changing it)."""
    db = Database(local_database_url(get_settings()))
    if watch and campaign_id is not None and not as_json:
        running.follow_and_report(db, campaign_id, timeout=float("inf"))
        return
    found = _progress_of(db, campaign_id)
    if campaign_id is not None and not found:
        raise DispatcherError(f"no campaign {campaign_id}")
    try:
        shown = _forecast_of(db, found[0], rate_card) if campaign_id is not None else None
    finally:
        db.dispose()  # closed now; the live view below opens what it needs again
    if as_json:
        documents = [p.as_dict() for p in found]
        if shown is not None:
            documents[0]["forecast"] = forecasts.as_json(*shown)
        typer.echo(json.dumps(documents, indent=2, default=str, ensure_ascii=False))
        return
    if campaign_id is not None:
        running.show_summary(found[0])
        if shown is not None:
            forecasts.show(*shown)
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


def _forecast_of(
    db: Database, current: progress.Progress, option: Path | None
) -> tuple[Forecast, Costing | None] | None:
    """A scheduled campaign's forecast (computed now), a previewed one's (stored). A
    rate card is read only then (a bad RATE_CARD does not hide a sending campaign); a
    forecast that cannot be computed is said on stderr, the status still shown."""
    from dispatcher.preparation.forecast import cost, forecast_of

    if current.state not in ("scheduled", "previewed"):
        return None
    card = forecasts.rate_card(option)
    try:
        found = forecast_of(db, current.campaign_id)
    except DispatcherError as exc:
        typer.echo(f"forecast not available: {exc}", err=True)
        return None
    if found is None:
        return None
    return found, cost(found, card) if card is not None else None


def _progress_of(db: Database, campaign_id: int | None) -> list[progress.Progress]:
    """One campaign, or the 20 latest; with the limiter's rate factor where known."""
    with db.session() as session:
        ids = (
            [campaign_id]
            if campaign_id is not None
            else list(session.scalars(select(Campaign.id).order_by(Campaign.id.desc()).limit(20)))
        )
        found = [p for p in (progress.progress(session, i) for i in ids) if p is not None]
    from dispatcher.interfaces.actions import with_rate_factor

    return [with_rate_factor(p) for p in found]


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
    """Per-recipient outcome CSV: status, LINK result code, WhatsApp error code, times,
    and the phone number a person shared since the campaign started."""
    from dispatcher.operations.reports import write_outcomes
    from dispatcher.operations.shares import shared_numbers

    db = Database(local_database_url(get_settings()))
    try:
        with db.session() as session:
            if session.get(Campaign, campaign_id) is None:
                raise DispatcherError(f"no campaign {campaign_id}")
            shared = shared_numbers(session, campaign_id)  # before the rows' stream opens
            rows = progress.outcomes(session, campaign_id)
            if output is None:
                write_outcomes(sys.stdout, rows, shared)
                return
            with output.open("w", encoding="utf-8", newline="") as handle:
                count = write_outcomes(handle, rows, shared)
    finally:
        db.dispose()
    say(f"{count} recipient lines written to ", str(output))


@app.command(short_help="The rows a campaign could not use, with line and reason.")
@friendly
def rejects(
    campaign_id: Annotated[int, typer.Argument(help="the campaign")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file; else stdout")] = None,
) -> None:
    """The rejects report (line, reason, the row) as stored when the campaign was
    prepared: the same from any host, whichever worker prepared it."""
    from dispatcher.campaigns.inputs import REJECTS, fetch_report

    db = Database(local_database_url(get_settings()))
    if output is None:
        found = fetch_report(db, campaign_id, REJECTS, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        partial = output.with_name(output.name + ".part")
        try:
            with partial.open("wb") as handle:
                found = fetch_report(db, campaign_id, REJECTS, handle)
            if found:
                partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    if not found:
        raise DispatcherError(
            f"campaign {campaign_id} has no rejects report yet: it is written when preparation ends"
        )
    if output is not None:
        say("Rejects of campaign ", str(campaign_id), " written to ", str(output))


_IDENTIFIER_HELP = "phone number (E.164, or national with --region) or BSUID"
_REGION_HELP = "ISO country for a number without a country code"
_LIMIT_HELP = "at most this many campaign messages, and echoes"


@app.command(short_help="What the dispatcher knows of one person (as `identities show`).")
@friendly
def person(
    identifier: Annotated[str, typer.Argument(help=_IDENTIFIER_HELP)],
    region: Annotated[str | None, typer.Option(help=_REGION_HELP)] = None,
    limit: Annotated[int, typer.Option(min=1, help=_LIMIT_HELP)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """The same as `dispatcher identities show`: the identifiers the identity book
    links to IDENTIFIER now and linked before, the person's messages in campaigns and
    what the business sent them from the WhatsApp Business app (echoes), newest first."""
    _show_person(identifier, region, limit, as_json=as_json)


identities_app = typer.Typer(
    no_args_is_help=True,
    help="The identity book: which identifiers are one person, since when, and why.",
)


@identities_app.command("show")
@friendly
def identities_show(
    identifier: Annotated[str, typer.Argument(help=_IDENTIFIER_HELP)],
    region: Annotated[str | None, typer.Option(help=_REGION_HELP)] = None,
    limit: Annotated[int, typer.Option(min=1, help=_LIMIT_HELP)] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object (stable keys, ISO times)")
    ] = False,
) -> None:
    """Whose IDENTIFIER is now and was before (a number or BSUID a change retired is
    not sent to as its former person's), every identifier ever linked to that person
    with its source, time, portfolio, username and retirement, which are on the
    opt-out list, and the person's campaign messages and echoes, newest first.
    Identifiers are shown whole: you asked by one of them."""
    _show_person(identifier, region, limit, as_json=as_json)


def _show_person(identifier: str, region: str | None, limit: int, *, as_json: bool) -> None:
    from dispatcher.interfaces.console import person_view
    from dispatcher.operations.person import identifier_of, look_up

    wanted = identifier_of(identifier, region.upper() if region else None)
    if wanted is None:
        raise typer.BadParameter(
            "not a phone number (international, or national with --region) or a BSUID",
            param_hint="IDENTIFIER",
        )
    db = local_db()
    try:
        with db.session() as session:
            found = look_up(session, wanted, limit=limit)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2, ensure_ascii=False))
        return
    console.print(person_view(found, limit))


@app.command(short_help="Remove stored files of campaigns that ended long ago.")
@friendly
def purge(
    older_than: Annotated[
        str, typer.Option("--older-than", help="age since the campaign ended: 90d, 12h")
    ] = "",
) -> None:
    """Remove the stored inputs and reports (phone numbers among them) of campaigns that
    ended more than the given time ago; the campaigns, their counts and per-person
    statuses stay. Default: RETENTION_DAYS (beat does this every hour)."""
    from dispatcher.campaigns.inputs import purge as purge_files

    days = get_settings().retention_days
    age = _age(older_than) if older_than else (timedelta(days=days) if days else None)
    purged = purge_files(local_db(), age)  # None (RETENTION_DAYS=0): only unused contents
    say(
        f"Stored files of {purged.campaigns} campaign(s) removed ({purged.files} files, "
        f"{purged.contents} contents no campaign uses any more)."
    )


def _age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` or a number of days."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "d")
    try:
        value = float(number)
    except ValueError:
        raise ConfigurationError(f"--older-than: {text!r} is not an age (90d, 12h, 30m)") from None
    if value < 0:
        raise ConfigurationError("--older-than: an age is not negative")
    return timedelta(**{units[unit]: value})


@app.command(short_help="Stop sending a campaign; resume goes on.")
@friendly
def pause(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Stop sending a campaign (every worker, within a second); resume goes on."""
    from dispatcher.interfaces import actions

    actions.pause(local_db(), campaign_id)
    console.print(f"Campaign {campaign_id} paused: no new requests leave; those on the "
                  "wire finish. `dispatcher resume` goes on where it stopped.")  # fmt: skip


@app.command(short_help="Go on sending a paused campaign.")
@friendly
def resume(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Go on sending a paused campaign, from where it stopped (nobody twice)."""
    from dispatcher.interfaces import actions

    resumed = actions.resume(local_db(), campaign_id)
    if not resumed.queued:
        console.print(f"Campaign {campaign_id} is sending again; with no REDIS_URL no worker "
                      "runs now to send its batches.")  # fmt: skip
        return
    waiting = " (the rest waits for its canary to be judged)" if resumed.canary_waits else ""
    console.print(
        f"Campaign {campaign_id} resumed: {resumed.batches_queued} batch(es) queued{waiting}."
    )


@app.command(short_help="Stop a campaign for good.")
@friendly
def cancel(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Stop a campaign for good; its report lists the people never sent."""
    from dispatcher.interfaces import actions

    never = actions.cancel(local_db(), campaign_id)
    console.print(
        f"Campaign {campaign_id} cancelled: {never} people will not be sent their message "
        f"(status 'cancelled' in `dispatcher report {campaign_id}`)."
    )


@app.command(short_help="Remove a campaign that never sent (a preview...).")
@friendly
def delete(campaign_id: Annotated[int, typer.Argument(help="the campaign")]) -> None:
    """Remove a campaign that never sent (a preview, a draft, one that failed first)."""
    with local_db().session() as session:
        deleted = control.delete(session, campaign_id)
    folder = Path(deleted.rejects_path).parent if deleted.rejects_path else None
    if folder is not None and folder.name == f"campaign-{campaign_id}" and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)  # its rejects report
    say(f"Campaign {campaign_id} deleted: ", deleted.name)


@app.command(short_help="Run the webhook app (LINK's reports, incoming messages).")
@friendly
def serve(
    host: Annotated[str, typer.Option(help="public interface (the webhooks)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="public port")] = 8000,
    internal_host: Annotated[
        str, typer.Option(help="internal interface (console, REST API, metrics)")
    ] = "127.0.0.1",
    internal_port: Annotated[int, typer.Option(help="internal port (0: any free one)")] = 8001,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="run without WEBHOOK_TOKEN (loopback only)")
    ] = False,
) -> None:
    """Run the webhook app: LINK's DLRs and incoming messages on the public listener;
    the console, the REST API, metrics and campaign status on the internal one."""
    from dispatcher.interfaces import servers
    from dispatcher.interfaces.edge import MAX_CONNECTIONS, CallerLimits, guarded_protocol
    from dispatcher.interfaces.edge import is_loopback as loopback
    from dispatcher.interfaces.servers import ServerThread
    from dispatcher.interfaces.web.app import create_internal_app
    from dispatcher.interfaces.webhooks import create_app

    settings = get_settings()
    token = _webhook_token(settings, host, no_auth=no_auth)
    _meta_keys(settings, public=not loopback(host))
    limits = CallerLimits(trusted_proxies=settings.trusted_proxy_networks)
    url = local_database_url(settings)
    migrate(url)
    db = Database(url)
    # Every page of it but /healthz asks for an API key, wherever it listens.
    internal = ServerThread(create_internal_app(db), host=internal_host, port=internal_port).start()
    base = f"http://{internal_host}:{internal.port}"
    console.print(f"Console on {base}/console/ and REST API on {base}/api/ (log in with a key "
                  "from `dispatcher api-keys create NAME --scope send`); metrics on "
                  f"{base}/metrics")  # fmt: skip
    # No access log: callers may put the token in the URL, and paths can name numbers.
    # uvloop and httptools named, not "auto": a missing one fails here instead of
    # halving the callbacks a core takes; httptools with a deadline on each request's
    # head and body (slow clients). No proxy-header middleware (edge.CallerLimits reads
    # X-Forwarded-For from TRUSTED_PROXIES only) and no Server header.
    try:
        webhooks = create_app(db, token=token, limits=limits)
        # Start-up's heap out of the collector's sight (as a worker's): full collections
        # would walk it again and again while callbacks flow, each a pause of the loop.
        gc.collect()
        gc.freeze()
        servers.run(  # stops in seconds: servers' docstring
            webhooks,
            drain_seconds=settings.stop_drain_seconds,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            loop="uvloop",
            http=guarded_protocol(),
            limit_concurrency=MAX_CONNECTIONS,
            proxy_headers=False,
            server_header=False,
        )
    finally:
        internal.stop()


def _meta_keys(settings: Settings, *, public: bool) -> None:
    """Meta's webhooks are trusted by their signature only: a webhook app reachable off
    loopback in a deployment that sends through Meta must hold the app secret. Without a
    verify token Meta's dashboard cannot subscribe it (said, not refused: LINK-only use
    of the Meta path is none)."""
    if settings.meta_base_url is None and settings.meta_access_token is None:
        return
    if settings.meta_app_secret is None and public:
        raise ConfigurationError(
            "META_APP_SECRET is not set: Meta's webhooks at /webhooks/meta could not be "
            "verified (X-Hub-Signature-256)"
        )
    if settings.meta_verify_token is None:
        say(("Note: ", "yellow"), "META_VERIFY_TOKEN is not set: Meta's webhook "
            "verification of /webhooks/meta will be refused (403)")  # fmt: skip


def _webhook_token(settings: Settings, host: str, *, no_auth: bool) -> str | None:
    """``WEBHOOK_TOKEN``, or None where running open is allowed: never in production
    (``DATABASE_URL`` or ``REDIS_URL`` set) unless ``--no-auth``, and only on loopback."""
    from dispatcher.interfaces.edge import is_loopback

    if settings.webhook_token is not None:
        return settings.webhook_token.get_secret_value()
    if not is_loopback(host):
        refused = (
            "--no-auth is accepted only on loopback" if no_auth else "WEBHOOK_TOKEN is not set"
        )
        raise ConfigurationError(
            f"{refused}: on {host} anyone could post forged delivery reports and "
            "opt-outs. Set WEBHOOK_TOKEN (LINK presents it in the gate URL)."
        )
    if no_auth:
        console.print(
            f"[yellow]--no-auth: the webhooks accept any caller on {host} (loopback only).[/]"
        )
        return None
    if settings.database_url is not None or settings.redis_url is not None:
        raise ConfigurationError(
            "WEBHOOK_TOKEN is not set: with DATABASE_URL or REDIS_URL set this is production, "
            "and the webhooks would accept forged reports. Set WEBHOOK_TOKEN, or pass "
            "--no-auth to run open on loopback."
        )
    console.print(
        "[yellow]WEBHOOK_TOKEN is not set: the webhooks accept any caller (loopback only).[/]"
    )
    return None


@app.command(short_help="Run the simulator (LINK's API and Meta's Cloud API).")
@friendly
def simulate(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8100,
    gate: Annotated[
        list[str] | None,
        typer.Option(help="event report gate as ID=URL (repeatable); else SIMULATOR_GATES"),
    ] = None,
    provider: Annotated[
        str, typer.Option(help="link or meta: whose settings to print (one app serves both)")
    ] = "link",
    meta_webhook: Annotated[
        str | None,
        typer.Option(help="URL for Meta's status webhooks; else SIMULATOR_META_WEBHOOK_URL"),
    ] = None,
) -> None:
    """Run the simulator (settings from SIMULATOR_* variables): LINK's WhatsApp Message API
    and Meta's Cloud API on one port; prints the settings a dispatcher needs for PROVIDER."""
    from pydantic import ValidationError

    from dispatcher.interfaces import servers
    from dispatcher.simulator import SimulatorConfig, create_app

    if provider not in ("link", "meta"):
        raise ConfigurationError(f"--provider is link or meta, got {provider!r}")
    config = SimulatorConfig()
    if gate:
        gates = dict(config.gates)
        for item in gate:
            gate_id, sep, url = item.partition("=")
            if not sep or not url:
                raise ConfigurationError(f"--gate wants ID=URL, got {item!r}")
            gates[gate_id] = url
        config = config.model_copy(update={"gates": gates})
    if meta_webhook:
        try:  # validated as SIMULATOR_META_WEBHOOK_URL is
            config = SimulatorConfig.model_validate(
                {**config.model_dump(), "meta_webhook_url": meta_webhook}
            )
        except ValidationError as error:
            raise ConfigurationError(f"--meta-webhook: {error.errors()[0]['msg']}") from error
    base_url = f"http://{host}:{port}"
    defaults = SimulatorConfig.model_fields

    def shown(name: str, variable: str) -> str:
        """A demo credential as is; one the user set stays out of the output."""
        value = getattr(config, name)
        return value if value == defaults[name].default else f"<your {variable}>"

    if provider == "link":
        console.print(
            f"LINK simulator on {base_url} (user {config.username!r}, "
            f"gates {', '.join(config.gates) or 'none'})"
        )
        lines = [f"LINK_BASE_URL={base_url}", f"LINK_USERNAME={config.username}",
                 f"LINK_PASSWORD={shown('password', 'SIMULATOR_PASSWORD')}"]  # fmt: skip
    else:
        numbers = ", ".join(
            f"{pid} ({shown_as})" for pid, shown_as in config.meta_phone_numbers.items()
        )
        console.print(
            f"Meta Cloud API simulator on {base_url} (phone number ids {numbers}; "
            f"status webhooks to {config.meta_webhook_url or 'nowhere'})"
        )
        lines = [
            f"META_BASE_URL={base_url}",
            f"META_ACCESS_TOKEN={shown('meta_access_token', 'SIMULATOR_META_ACCESS_TOKEN')}",
            f"META_APP_SECRET={shown('meta_app_secret', 'SIMULATOR_META_APP_SECRET')}",
            f"META_WABA_ID={config.meta_waba_id}",
        ]
    console.print("Settings for the dispatcher:\n" + "\n".join(lines), highlight=False)
    # The simulator's receipt log is a benchmark's clock: a full collection walking the
    # start-up heap would hold requests unread and bunch their arrival times.
    gc.collect()
    gc.freeze()
    servers.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


app.add_typer(schedule_app, name="schedule", short_help="Recurring campaigns (cron).")
app.add_typer(keys_app, name="api-keys", short_help="Keys of the REST API and the console.")
app.add_typer(suppress_app, name="suppress", short_help="The opt-out list.")
app.add_typer(
    identities_app, name="identities", short_help="Whose an identifier is, now and before."
)


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
