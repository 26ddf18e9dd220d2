"""What a person sees while a campaign runs: live progress, then a summary table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dispatcher.db import Database
from dispatcher.operations import progress as progress_mod
from dispatcher.operations.progress import Progress as CampaignProgress
from dispatcher.status import CampaignState

if TYPE_CHECKING:
    from dispatcher.operations.person import Person

STAGES = ("submitted", "sent", "delivered", "read", "failed")


class FollowTimeout(Exception):
    """The campaign did not finish within the time the caller allowed."""


def follow(
    db: Database,
    campaign_id: int,
    console: Console,
    *,
    timeout_seconds: float,
    extra_done: Callable[[], bool] = lambda: True,
    before_look: Callable[[], None] = lambda: None,
    alive: Callable[[], str | None] = lambda: None,
    poll_seconds: float = 0.2,
) -> CampaignProgress:
    """Show live progress until the campaign is finished, a guardrail pauses it, or the
    timeout. It only reads; ``before_look`` runs before each look (the caller may
    complete a settled campaign there rather than wait for the periodic sweep).

    ``extra_done`` lets the embedded mode also wait for the simulator's last callbacks;
    ``alive`` returns a message when a part the run depends on has stopped.
    """
    deadline = time.monotonic() + timeout_seconds
    bars = Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks = {stage: bars.add_task(stage, total=None) for stage in STAGES}
    current: CampaignProgress | None = None
    with bars:
        while True:
            before_look()
            with db.session() as session:
                current = progress_mod.progress(session, campaign_id)
            if current is None:
                raise FollowTimeout(f"campaign {campaign_id} vanished")
            if current.state not in ("draft", "preparing"):
                for stage in STAGES:
                    bars.update(
                        tasks[stage],
                        total=max(current.messages, 1),
                        completed=getattr(current, stage),
                    )
            # Done when nothing is in flight: every message has its outcome, or waits
            # only for a resend planned later (the periodic task sends it when due).
            idle = current.state == "sending" and current.unsettled == current.awaiting_resend
            if (current.finished or (idle and current.awaiting_resend)) and extra_done():
                with db.session() as session:  # what the last reports changed
                    current = progress_mod.progress(session, campaign_id) or current
                break
            if current.state == "paused" and current.paused_by:
                break  # a guardrail paused it: the operator's call, said in the summary
            problem = alive()
            if problem:
                raise FollowTimeout(problem)
            if time.monotonic() > deadline:
                raise FollowTimeout(
                    f"campaign {campaign_id} still {current.state} after {timeout_seconds:.0f}s"
                )
            time.sleep(poll_seconds)
    return current


def summary(progress: CampaignProgress) -> Table:
    # Text, not a markup string: the name is the user's, brackets and all.
    title = Text(f"Campaign {progress.campaign_id}: {progress.name} ({progress.state})")
    table = Table(title=title, caption=_notes(progress), caption_justify="left")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("note", overflow="fold")
    rows: list[tuple[str, int, str]] = [
        ("loaded", progress.loaded, "data rows read"),
        ("rejected", progress.rejected, "rows in the rejects file below"),
        ("duplicates removed", progress.duplicates, "lines merged: see the report"),
        ("people", progress.messages, "one message each"),
        ("submitted", progress.submitted, f"accepted by {progress.provider}"),
        ("sent", progress.sent, ""),
        ("delivered", progress.delivered, ""),
        ("read", progress.read, ""),
        ("failed", progress.failed, f"reasons: dispatcher report {progress.campaign_id}"),
    ]
    if progress.state == CampaignState.PREVIEWED:
        rows = rows[:4]  # a dry run: nothing below this was meant to happen
    rows += _exceptions(progress)
    for label, count in sorted(progress.failures.items(), key=lambda item: -item[1]):
        rows.append((f"  failed {label}", count, ""))
    rows += _pricing_and_replies(progress)
    for label, count, note in rows:
        table.add_row(label, str(count), note)
    if progress.rate_per_second and progress.state == CampaignState.SENDING:
        factor = 1.0 if progress.rate_factor is None else progress.rate_factor
        note = "" if factor >= 1 else "lowered after Meta's rate-limit errors; recovering"
        effective = max(1, int(progress.rate_per_second * factor))
        table.add_row("send rate limit", f"{effective}/s", f"{factor:.0%} of {progress.level} "
                      f"({progress.rate_per_second}/s) {note}".strip())  # fmt: skip
    return table


def _exceptions(progress: CampaignProgress) -> list[tuple[str, int, str]]:
    """The rows that show only when they count something."""
    rows: list[tuple[str, int, str]] = []
    if progress.expired:
        rows.append(("expired", progress.expired, "validity ran out before a send"))
    if progress.cancelled:
        rows.append(("never sent", progress.cancelled, "campaign cancelled first"))
    for reason, count in sorted(progress.skipped.items()):
        rows.append((f"skipped: {reason}", count, "not sent: see the report's skip_reason"))
    if progress.awaiting_resend:
        rows.append(("awaiting resend", progress.awaiting_resend, "retryable failures"))
    if progress.held_for_quality:
        rows.append(("held for quality", progress.held_for_quality,
                     "Meta holds them back for now (template pacing)"))  # fmt: skip
    if progress.resent_to_phone:
        rows.append(("resent to phone", progress.resent_to_phone, "BSUID not allowed (131062)"))
    if progress.in_doubt_batches:
        rows.append(("in doubt (batches)", progress.in_doubt_batches, "settled by DLRs only"))
    if progress.unsettled and progress.state != CampaignState.PREVIEWED:
        rows.append(("awaiting outcome", progress.unsettled, ""))
    return rows


def _notes(progress: CampaignProgress) -> Text | None:
    """A guardrail's pause and the canary's figures, then what registration and
    preparation noted, under the table."""
    lines: list[str] = []
    if progress.paused_by:  # kept as history once the campaign was cancelled
        said = "Paused" if progress.state == "paused" else "Was paused"
        lines.append(f"{said} by guardrail: {progress.paused_by}")
    lines += [line[0].upper() + line[1:] for line in progress.canary]
    lines += [f"Note: {n}" for n in progress.notes]
    return Text("\n".join(lines)) if lines else None


def _pricing_and_replies(progress: CampaignProgress) -> list[tuple[str, int, str]]:
    """Billable messages by WhatsApp's pricing category (what LINK's reports say; the
    price is the account's rate card), then replies and the buttons chosen."""
    rows: list[tuple[str, int, str]] = []
    for category, count in progress.billable.items():
        rows.append((f"billable: {category}", count, "WhatsApp pricing category"))
    for category, count in progress.not_billable.items():
        rows.append((f"not billable: {category}", count, "WhatsApp pricing category"))
    if progress.replies:
        people = progress.people_replied
        rows.append(
            (
                "replies",
                progress.replies,
                f"from {people} " + ("person" if people == 1 else "people"),
            )
        )
    for button, count in progress.reply_buttons.items():
        # The person's own words: shown as text, never read as markup.
        rows.append((f"  chose {escape(button)}", count, "button or list reply"))
    return rows


def overview(campaigns: list[CampaignProgress], width: int = 80) -> Group:
    """One line a campaign, made to fit ``width`` columns (80 and up): people submitted
    of all, the outcome counts, the send rate against the limit, and when the last
    waiting message should be submitted; only a long name is cut. Previews (dry runs)
    are listed apart: they never send."""
    running: list[list[str]] = []
    previewed: list[list[str]] = []
    for p in campaigns:
        if p.state == CampaignState.PREVIEWED:
            previewed.append([str(p.campaign_id), p.name, str(p.loaded), str(p.rejected),
                              str(p.duplicates), str(p.messages)])  # fmt: skip
            continue
        rate = "-"
        if p.rate_per_second:
            factor = 1.0 if p.rate_factor is None else p.rate_factor
            rate = f"{p.send_rate:.0f}/{p.rate_per_second * factor:.0f}"
        eta = "-" if p.eta_seconds is None else _duration(p.eta_seconds)
        running.append([str(p.campaign_id), p.name, p.state, f"{p.submitted}/{p.messages}",
                        str(p.delivered), str(p.read), str(p.failed), rate, eta])  # fmt: skip
    # "people": submitted of all; "msg/s": the rate now / the limit.
    shown = [_compact("Campaigns", _RUNNING, running, width)]
    if previewed:
        shown = shown if running else []
        shown.append(_compact("Previews (dry runs)", _PREVIEWED, previewed, width))
        shown[-1].caption = "dispatcher delete ID removes one"
    return Group(*shown)


_RUNNING = ("id", "name", "state", "people", "deliv.", "read", "fail", "msg/s", "ETA")
_PREVIEWED = ("id", "name", "loaded", "rejected", "duplicates", "people")


def _compact(title: str, columns: tuple[str, ...], rows: list[list[str]], width: int) -> Table:
    """A borderless table, one space between columns, whose ``name`` column takes what
    the others leave of ``width`` (cut with an ellipsis): figures are never cut."""
    others = sum(
        max(len(column), *(len(row[i]) for row in rows)) if rows else len(column)
        for i, column in enumerate(columns)
        if column != "name"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=0)
    for column in columns:
        if column == "name":
            room = max(8, width - others - (len(columns) - 1))
            table.add_column(column, max_width=room, overflow="ellipsis", no_wrap=True)
        else:
            justify: Literal["left", "right"] = "left" if column == "state" else "right"
            table.add_column(column, justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(*row[:1], Text(row[1]), *row[2:])  # the name: the user's text
    return table


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def person_view(person: Person, limit: int) -> Group:
    """What the dispatcher knows of one person (``dispatcher identities show``,
    ``dispatcher person``): whose the asked identifier is now and was before, the
    opt-out list, every link with its source, time, portfolio, username and
    retirement, then campaign messages and business app messages, newest first.
    Identifiers whole: the operator asked by one of them. A list that reached
    ``limit`` says there may be more."""
    if not person.known:
        return Group(Text(f"Nothing is known of {person.asked}: no identity, message or echo."))
    shown: list[Text | Table] = [_whose(person)]
    title = f"Person {person.person_key}" if person.person_key else f"Person {person.asked}"
    identifiers = Table(title=Text(title), box=box.SIMPLE_HEAD)
    for column in ("identifier", "kind", "learned from", "learned at (UTC)", "portfolio",
                   "username", "retired (UTC)", "opted out"):  # fmt: skip
        identifiers.add_column(column, no_wrap=column in _WHOLE, overflow="fold")
    for known in person.identifiers:
        learned = "-" if known.learned_at is None else f"{known.learned_at:%Y-%m-%d %H:%M}"
        source = known.learned_from or "not in the identity book"
        if known.learned_from and known.source:
            source = f"{known.learned_from}: {known.source}"
        retired = "-" if known.retired_at is None else (
            f"{known.retired_at:%Y-%m-%d %H:%M} {known.retired_by or ''}".rstrip()
        )  # fmt: skip
        identifiers.add_row(Text(known.identifier), known.kind, Text(source), learned,
                            Text(known.portfolio or "-"), Text(known.username or "-"),
                            Text(retired), "yes" if known.opt_out else "-")  # fmt: skip
    shown.append(identifiers)
    messages = Table(title="Campaign messages", box=box.SIMPLE_HEAD,
                     caption=_more(len(person.messages), limit))  # fmt: skip
    for column in ("campaign", "name", "sent to", "status", "last update (UTC)"):
        messages.add_column(column, justify="right" if column == "campaign" else "left")
    for m in person.messages:
        messages.add_row(str(m.campaign_id), Text(m.campaign_name), Text(m.destination), m.status,
                         f"{m.updated_at:%Y-%m-%d %H:%M:%S}")  # fmt: skip
    shown.append(messages)
    echoes = Table(
        title="Sent from the WhatsApp Business app (echoes: no campaign's messages)",
        box=box.SIMPLE_HEAD,
        caption=_more(len(person.echoes), limit),
    )
    for column in ("time (UTC)", "kind", "business number", "to", "about message"):
        echoes.add_column(column, no_wrap=column != "about message", overflow="fold")
    for e in person.echoes:
        echoes.add_row(f"{e.sent_at:%Y-%m-%d %H:%M:%S}", Text(e.kind), e.business_number or "-",
                       Text(e.recipient), Text(e.original_message_id or ""))  # fmt: skip
    shown.append(echoes)
    return Group(*shown)


_WHOLE = ("identifier", "kind", "learned at (UTC)", "portfolio", "opted out")


def _whose(person: Person) -> Text:
    """Whose the asked identifier is now and was before, and whether the person is on
    the opt-out list: the answer to "why did this number not get the campaign?"."""
    asked = person.asked
    if person.linked_now:
        lines = [f"{asked} belongs to person {person.person_key}."]
    else:
        lines = [f"{asked} belongs to nobody in the identity book now."]
    for was in person.formerly:
        whose = (
            f"person {was.person_key} (now {', '.join(was.identifiers)})"
            if was.person_key
            else "a person the book no longer holds"
        )
        lines.append(
            f"It was {whose} until {was.retired_at:%Y-%m-%d %H:%M} UTC ({was.retired_by}): "
            "it is not sent to as theirs."
        )
    opted = person.opted_out
    if opted:
        on = ", ".join(i.identifier for i in opted)
        why = "; ".join(dict.fromkeys(i.opt_out or "" for i in opted))
        lines.append(f"Opted out: the person is sent no campaign (on the list: {on}: {why}).")
    elif person.linked_now or person.person_key:
        lines.append("The person is not on the opt-out list.")
    for other in person.identifiers:
        if other.opt_out and other not in opted:
            lines.append(f"{other.identifier} is on the opt-out list: {other.opt_out}.")
    if person.usernames:
        lines.append("Usernames: " + ", ".join(person.usernames) + " (never a destination).")
    return Text("\n".join(lines))


def _more(count: int, limit: int) -> str | None:
    return f"the {limit} newest; --limit shows more" if count >= limit else None
