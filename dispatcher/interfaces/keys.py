"""``dispatcher api-keys``: the credentials of the REST API, the console and the
internal listener (``operations.access``), and their audit trail."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dispatcher.interfaces.terminal import console, friendly, local_session
from dispatcher.operations import access
from dispatcher.operations.access import Scope

keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys: bearer tokens for the REST API and the internal listener, and the "
    "console's logins. 'read' sees; 'send' also uploads, starts, pauses and cancels.",
)


@keys_app.command("create")
@friendly
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what uses it, e.g. 'marketing-ci'")],
    scope: Annotated[Scope, typer.Option(help="read or send")] = Scope.READ,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="print the key alone (for scripts)")
    ] = False,
) -> None:
    """Make a key and print it once: only its digest is kept."""
    with local_session() as session:
        _, secret = access.create_key(session, name, scope)
    if quiet:
        typer.echo(secret)
        return
    console.print(f"API key {escape(repr(name))} ({scope}): [bold]{secret}[/]")
    console.print("It is shown this once; send it as 'Authorization: Bearer <key>' or paste it "
                  "at the console's login.")  # fmt: skip


@keys_app.command("list")
@friendly
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every key: scope, when made, last used, revoked (never the secret)."""
    with local_session() as session:
        found = access.keys(session)
    if as_json:
        rows = [
            {"id": k.id, "name": k.name, "scope": str(k.scope),
             "created_at": k.created_at, "last_used_at": k.last_used_at,
             "revoked_at": k.revoked_at}
            for k in found
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="API keys")
    for column in ("id", "name", "scope", "created", "last used", "revoked"):
        table.add_column(column)
    for k in found:
        table.add_row(str(k.id), escape(k.name), str(k.scope), f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")  # fmt: skip
    console.print(table)


@keys_app.command("revoke")
@friendly
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke a key: its calls and console sessions are refused from their next request."""
    with local_session() as session:
        access.revoke(session, name)
    console.print(f"API key {escape(repr(name))} revoked.")


@keys_app.command("audit")
@friendly
def keys_audit(
    limit: Annotated[int, typer.Option(help="how many of the latest events")] = 50,
) -> None:
    """The audit trail: who did what through the API and the console, newest first."""
    table = Table(title="Audit trail")
    for column in ("when (UTC)", "key", "action", "target", "status"):
        table.add_column(column, overflow="fold")
    with local_session() as session:
        for e in access.trail(session, limit):
            table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", escape(e.key_name or "(none)"),
                          escape(e.action), escape(e.target or ""), str(e.status))  # fmt: skip
    console.print(table)
