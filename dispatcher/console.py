"""What a person sees while a campaign runs: live progress, then a summary table."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dispatcher import progress as progress_mod
from dispatcher.db import Database
from dispatcher.progress import Progress as CampaignProgress
from dispatcher.status import CampaignState

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
    alive: Callable[[], str | None] = lambda: None,
    poll_seconds: float = 0.2,
) -> CampaignProgress:
    """Show live progress until the campaign is finished (or the timeout).

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
            with db.session() as session:
                progress_mod.complete_if_settled_if_sending(session, campaign_id)
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
    table = Table(title=f"Campaign {progress.campaign_id}: {progress.name} ({progress.state})")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("note", overflow="fold")
    rows: list[tuple[str, int, str]] = [
        ("loaded", progress.loaded, "data rows read"),
        ("rejected", progress.rejected, "rows in the rejects file below"),
        ("duplicates removed", progress.duplicates, "same person listed again"),
        ("people", progress.messages, "one message each"),
        ("submitted", progress.submitted, "accepted by LINK"),
        ("sent", progress.sent, ""),
        ("delivered", progress.delivered, ""),
        ("read", progress.read, ""),
        ("failed", progress.failed, f"reasons: dispatcher report {progress.campaign_id}"),
    ]
    if progress.state == CampaignState.PREVIEWED:
        rows = rows[:4]  # a dry run: nothing below this was meant to happen
    if progress.expired:
        rows.append(("expired", progress.expired, "validity ran out before a send"))
    if progress.cancelled:
        rows.append(("never sent", progress.cancelled, "campaign cancelled first"))
    if progress.awaiting_resend:
        rows.append(("awaiting resend", progress.awaiting_resend, "retryable failures"))
    if progress.in_doubt_batches:
        rows.append(("in doubt (batches)", progress.in_doubt_batches, "settled by DLRs only"))
    if progress.unsettled and progress.state != CampaignState.PREVIEWED:
        rows.append(("awaiting outcome", progress.unsettled, ""))
    for label, count in sorted(progress.failures.items(), key=lambda item: -item[1]):
        rows.append((f"  failed {label}", count, ""))
    for label, count, note in rows:
        table.add_row(label, str(count), note)
    if progress.rate_per_second and progress.state == CampaignState.SENDING:
        factor = 1.0 if progress.rate_factor is None else progress.rate_factor
        note = "" if factor >= 1 else "lowered after Meta's rate-limit errors; recovering"
        effective = max(1, int(progress.rate_per_second * factor))
        table.add_row("send rate limit", f"{effective}/s", f"{factor:.0%} of {progress.level} "
                      f"({progress.rate_per_second}/s) {note}".strip())  # fmt: skip
    if progress.rejects_path:
        table.caption = f"Rejects: {progress.rejects_path}"
    return table


def overview(campaigns: list[CampaignProgress]) -> Table:
    """One line a campaign: a bar of people submitted, the outcome counts, the send
    rate against the level, and when the last waiting message should be submitted."""
    table = Table(title="Campaigns")
    for column in ("id", "name", "state", "submitted", "sent", "delivered", "read",
                   "failed", "rate / limit", "ETA"):  # fmt: skip
        table.add_column(column, justify="right" if column not in ("name", "state") else "left")
    for p in campaigns:
        done = p.submitted + p.cancelled
        bar = Text.assemble(_bar(done, p.messages), f" {p.submitted}/{p.messages}")
        limit = "-"
        if p.rate_per_second:
            factor = 1.0 if p.rate_factor is None else p.rate_factor
            limit = f"{p.send_rate:.0f} / {p.rate_per_second * factor:.0f} msg/s"
        eta = p.eta_seconds
        table.add_row(
            str(p.campaign_id), p.name, p.state, bar, str(p.sent), str(p.delivered),
            str(p.read), str(p.failed), limit, "-" if eta is None else _duration(eta),
        )  # fmt: skip
    return table


def _bar(done: int, total: int, width: int = 16) -> Text:
    filled = round(width * done / total) if total else 0
    return Text("█" * filled, style="green") + Text("░" * (width - filled), style="grey50")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
