"""What every command shares: the console, verbatim printing, one clear error and the
exit codes, the local database."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy.orm import Session

from dispatcher.db import Database, migrate
from dispatcher.errors import CampaignSpecError, DispatcherError
from dispatcher.settings import Settings, get_settings

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


def local_db() -> Database:
    settings = get_settings()
    url = local_database_url(settings)
    if url.startswith("sqlite:"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    return Database(url)


@contextmanager
def local_session() -> Iterator[Session]:
    """One transaction on the local database, its connections closed after (a command
    that needs no more than that)."""
    db = local_db()
    try:
        with db.session() as session:
            yield session
    finally:
        db.dispose()


def print_rejects(rejects: list[Any]) -> None:
    for reject in rejects[:20]:
        console.print(f"  [yellow]line {reject.line}[/]: {reject.reason}")
    if len(rejects) > 20:
        console.print(f"  ... and {len(rejects) - 20} more unusable rows")
