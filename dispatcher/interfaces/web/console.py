"""The web console: server-rendered pages for the people who run campaigns, under
``/console`` of the internal listener.

Pages are Jinja2 templates (autoescaped: names, notes and reasons are the users' text)
with one small script (``static/console.js``) that refreshes the live parts of a page
every 2 s from this module's ``/live/...`` fragments and asks before a pause, resume or
cancel. Without the script every page still works: forms post and redirect back.

Who may do what is ``auth``'s: a session from a pasted API key; read-only keys see
everything but get no action buttons (and 403 if they post anyway). Every change goes
through ``actions``, as the CLI and the API do, and is audited. Phone numbers appear
masked (``masking``) on every page: only the report download carries them whole.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from dispatcher.errors import DispatcherError
from dispatcher.interfaces import actions
from dispatcher.interfaces.web import auth
from dispatcher.interfaces.web.auth import ApiError
from dispatcher.interfaces.web.charts import chart
from dispatcher.interfaces.webhooks import MAX_ID
from dispatcher.operations import flower, insight
from dispatcher.operations.access import Caller, Scope
from dispatcher.operations.progress import Progress
from dispatcher.status import CampaignState

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
#: Merges and rejects shown on a campaign's page; the CSV downloads hold them all.
LISTED_ROWS = 50
#: Campaigns on the list page, newest first.
LISTED_CAMPAIGNS = 50


#: The parts of a campaign's page (``_campaign``): each live region asks for its own.
NOW, OUTCOMES = frozenset({"now"}), frozenset({"outcomes", "rows"})
PAGE = frozenset({"now", "outcomes", "rows"})


def routes() -> list[BaseRoute]:
    return [
        Route("/", campaigns_page, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/new", new_page, methods=["GET"]),
        Route("/new", new_campaign, methods=["POST"]),
        Route("/campaigns/{campaign_id:int}", campaign_page, methods=["GET"]),
        Route("/campaigns/{campaign_id:int}/{action}", campaign_action, methods=["POST"]),
        Route("/live/campaigns", campaigns_fragment, methods=["GET"]),
        Route("/live/campaigns/{campaign_id:int}", campaign_fragment, methods=["GET"]),
        Route("/live/campaigns/{campaign_id:int}/outcomes", outcomes_fragment, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]


# -- pages -------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    return _render(request, "login.html", None, next=_next(request), problem=None)


async def login(request: Request) -> Response:
    """A pasted key starts a session. The login form carries the CSRF token of the
    (anonymous) session that showed it: another site cannot log a browser in."""
    form = await request.form()
    await auth.check_csrf(request, _text(form.get("csrf")))
    who = await auth.log_in_with(request, _text(form.get("key")))
    if who is None:
        auth.stranger(request)  # 429 past the address's limit: keys are not guessed
        await auth.audited(request, None, "console.login", None, 401)
        return _render(
            request,
            "login.html",
            None,
            status=401,
            next=_next(request, _text(form.get("next"))),
            problem="That key is not valid: unknown, revoked, or not copied whole.",
        )
    await auth.audited(request, who, "console.login", None, 303)
    return RedirectResponse(_next(request, _text(form.get("next"))), status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    await auth.check_csrf(request, _text(form.get("csrf")))
    auth.log_out(request)
    return RedirectResponse(f"{_base(request)}/login", status_code=303)


async def campaigns_page(request: Request) -> Response:
    who = await auth.require(request, Scope.READ)
    listed = await run_in_threadpool(_campaigns, request)
    return _render(request, "campaigns.html", who, page="campaigns", **listed)


async def campaigns_fragment(request: Request) -> Response:
    who = await auth.require(request, Scope.READ)
    listed = await run_in_threadpool(_campaigns, request)
    return _render(request, "_campaigns.html", who, **listed)


async def campaign_page(request: Request) -> Response:
    who = await auth.require(request, Scope.READ)
    shown = await run_in_threadpool(_campaign, request, _campaign_id(request))
    flash = request.session.pop("flash", None)
    return _render(request, "campaign.html", who, page="campaign", flash=flash, **shown)


async def campaign_fragment(request: Request) -> Response:
    who = await auth.require(request, Scope.READ)
    shown = await run_in_threadpool(_campaign, request, _campaign_id(request), NOW)
    return _render(request, "_campaign.html", who, **shown)


async def outcomes_fragment(request: Request) -> Response:
    who = await auth.require(request, Scope.READ)
    shown = await run_in_threadpool(_campaign, request, _campaign_id(request), OUTCOMES)
    return _render(request, "_outcomes_rows.html", who, **shown)


@dataclass(frozen=True, slots=True)
class Action:
    """A button on a campaign's page: the action's path, its words and its question."""

    name: str
    label: str
    question: str
    style: str = ""


ACTIONS = {
    "start": Action(
        "start",
        "Start sending",
        "Send this campaign now? Its files are checked again and it is sent as a new "
        "campaign; this dry run is removed.",
    ),
    "pause": Action(
        "pause",
        "Pause",
        "Pause this campaign? No new messages leave until "
        "you resume it; those already on their way finish.",
    ),
    "resume": Action(
        "resume",
        "Resume",
        "Resume this campaign? It goes on from where it stopped; nobody is sent twice.",
    ),
    "cancel": Action(
        "cancel",
        "Cancel campaign",
        "Cancel this campaign for good? The people "
        "not sent yet will never be sent it. This cannot be undone.",
        "danger",
    ),
}
#: The actions a campaign in each state offers.
OFFERED: dict[str, tuple[str, ...]] = {
    CampaignState.SENDING: ("pause", "cancel"),
    CampaignState.PREPARING: ("pause", "cancel"),
    CampaignState.SCHEDULED: ("cancel",),
    CampaignState.PREVIEWED: ("start",),
    CampaignState.PAUSED: ("resume", "cancel"),
}


async def campaign_action(request: Request) -> Response:
    """Pause, resume or cancel from the campaign's page, then back to it (start a dry
    run: on to the campaign it became)."""
    campaign_id = _campaign_id(request)
    name: str = request.path_params["action"]
    who = await auth.require(request, Scope.SEND)  # 403 for read keys and missing CSRF
    if name not in ACTIONS:
        raise ApiError(404, f"no action {name!r}: {', '.join(ACTIONS)}")
    target = f"campaign:{campaign_id}"
    shown = campaign_id
    try:
        said, shown = await run_in_threadpool(_act, request, name, campaign_id)
    except DispatcherError as refused:
        status = refusal_status(refused)
        if status == 404:
            raise ApiError(404, str(refused)) from None
        await auth.audited(request, who, f"console.{name}", target, status)
        request.session["flash"] = f"Not done: {refused}"
    else:
        await auth.audited(request, who, f"console.{name}", target, 303)
        request.session["flash"] = said
    return RedirectResponse(f"{_base(request)}/campaigns/{shown}", status_code=303)


def _campaign_id(request: Request) -> int:
    """The path's campaign id; one beyond any id the database holds is not found."""
    value: int = request.path_params["campaign_id"]
    if value > MAX_ID:
        raise HTTPException(404, f"no campaign {value}")
    return value


async def new_page(request: Request) -> Response:
    who = await auth.require(request, Scope.SEND)
    return _render(request, "new.html", who, page="new", result=None)


async def new_campaign(request: Request) -> Response:
    """Upload a campaign's files: check them (a dry run with its forecast), start them,
    or schedule them (``send_at`` written into the spec, as a folder dropped with it
    would say). A checked dry run is started from its page's action. Problems come
    back with their field paths, as ``dispatcher validate`` says them."""
    who = await auth.require(request, Scope.SEND)
    form = await request.form()
    intent = _text(form.get("intent")) or "check"
    send_at = _text(form.get("send_at")).strip()
    page = functools.partial(_render, request, "new.html", who, page="new")
    web = auth.context(request)
    try:
        files = await _read(form)
        if not files:
            raise actions.Invalid(
                "No files were chosen.",
                [{"field": "files", "message": "choose the campaign.yaml, its CSV files and "
                  "media, or one zip of the folder"}],
            )  # fmt: skip
        elif intent == "schedule":
            when = _send_at(send_at)
            staged = await run_in_threadpool(actions.with_send_at, files, when)
            result = await run_in_threadpool(actions.submit, web.db, staged, dry_run=False)
        else:
            result = await run_in_threadpool(
                actions.submit, web.db, files, dry_run=intent == "check"
            )
    except DispatcherError as refused:
        status = refusal_status(refused)
        await auth.audited(request, who, f"console.{intent}", None, status)
        problems = getattr(refused, "problems", [])
        return page(status=status, problem=str(refused), problems=problems, send_at=send_at)
    target = f"campaign:{result.campaign_id}" if result.campaign_id else None
    if not result.ok:
        await auth.audited(request, who, f"console.{intent}", target, 422)
        problem = result.error or "The files are not valid: nothing was registered."
        return page(status=422, problem=problem, problems=result.problems, send_at=send_at)
    await auth.audited(request, who, f"console.{intent}", target, 303 if intent != "check" else 200)
    if intent == "check":
        return page(result=result, send_at=send_at)
    request.session["flash"] = (
        f"Scheduled: it starts at {send_at} UTC."
        if intent == "schedule"
        else "Queued: it starts as soon as a worker prepares it."
    )
    return RedirectResponse(f"{_base(request)}/campaigns/{result.campaign_id}", status_code=303)


async def _read(form: FormData) -> dict[str, bytes]:
    """The uploaded files' contents (refused past ``actions``' size cap before more is
    read into memory); the spooled files closed either way."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        for upload in form.getlist("files"):
            if not isinstance(upload, UploadFile) or not upload.filename:
                continue
            total += upload.size or 0
            if total > actions.MAX_UPLOAD_BYTES:
                raise actions.TooLarge(
                    f"the upload is over {actions.MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"
                )
            files[upload.filename] = await upload.read()
    finally:
        await form.close()
    return files


def _send_at(value: str) -> datetime:
    """The form's ``send_at`` (``datetime-local``: no zone) as UTC."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise actions.Invalid(
            "send_at", [{"field": "send_at", "message": "a date and time, e.g. 2026-12-24T09:00"}]
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


#: The answer each of ``actions``' refusals gets (``actions``' docstring); any other
#: ``DispatcherError`` is the caller's mistake.
REFUSALS: tuple[tuple[type[DispatcherError], int], ...] = (
    (actions.NotFound, 404),
    (actions.Conflict, 409),
    (actions.Invalid, 422),
    (actions.TooLarge, 413),
    (actions.Unavailable, 503),
)


def refusal_status(refused: DispatcherError) -> int:
    return next((status for kind, status in REFUSALS if isinstance(refused, kind)), 400)


# -- what the pages read -----------------------------------------------------------------


def as_progress(document: Mapping[str, Any]) -> Progress:
    """A status document (``actions``) as the ``Progress`` it was made from: the pages
    read its properties (waiting, ETA) as the terminal does."""
    names = {f.name for f in dataclasses.fields(Progress)}
    values = {k: v for k, v in document.items() if k in names}
    for name in ("notes", "canary"):
        values[name] = tuple(values.get(name) or ())
    return Progress(**values)


def _campaigns(request: Request) -> dict[str, Any]:
    web = auth.context(request)
    found = actions.campaigns(web.db, limit=LISTED_CAMPAIGNS, settled=web.settled)
    listed = [as_progress(d) for d in found]
    with web.db.session() as session:
        held = {p.campaign_id: _held(session, p) for p in listed}
    return {"campaigns": listed, "held": held}


def _held(session: Session, p: Progress) -> flower.Held | None:
    """People held for a window or the tier (asked only of campaigns that may have them)."""
    if p.state not in OFFERED or not p.waiting_to_send:
        return None
    return flower.held(session, p.campaign_id)


def _campaign(request: Request, campaign_id: int, parts: frozenset[str] = PAGE) -> dict[str, Any]:
    """What the campaign's page shows, or the ``parts`` of it a live region asks for:
    the counts every 2 s; the chart, the failures (a GROUP BY over the campaign's
    messages each) and the merged and rejected rows every 10 s."""
    web = auth.context(request)
    document = actions.status_document(web.db, campaign_id)
    if document is None:
        raise ApiError(404, f"no campaign {campaign_id}")
    shown = as_progress(document)
    found: dict[str, Any] = {"p": shown, "forecast": document.get("forecast")}
    with web.db.session() as session:
        if "now" in parts:
            found["held"] = {campaign_id: _held(session, shown)}
        if "outcomes" in parts:
            found["failures"] = insight.failures(session, campaign_id)
            found["chart"] = chart(insight.timeline(session, campaign_id))
        if "rows" in parts:
            merges = insight.merges(session, campaign_id, limit=LISTED_ROWS + 1)
            found["merges"] = merges[:LISTED_ROWS]
            found["merges_more"] = len(merges) > LISTED_ROWS
            found["rejects"] = insight.rejects(session, campaign_id, limit=LISTED_ROWS)
    return found


def _act(request: Request, name: str, campaign_id: int) -> tuple[str, int]:
    """Do it through ``actions`` (the CLI's and API's rules): the sentence to show, and
    the campaign to show it on."""
    db = auth.context(request).db
    if name == "pause":
        actions.pause(db, campaign_id)
        return "Paused: no new messages leave; those on their way finish.", campaign_id
    if name == "resume":
        resumed = actions.resume(db, campaign_id)
        if not resumed.queued:
            said = "Sending again, but no worker runs here to send its batches (no REDIS_URL)."
            return said, campaign_id
        waits = " The rest waits for its canary to be judged." if resumed.canary_waits else ""
        return f"Resumed: {resumed.batches_queued:,} batch(es) queued.{waits}", campaign_id
    if name == "start":
        started = actions.start(db, campaign_id)
        if not started.ok or started.campaign_id is None:
            problems = "; ".join(f"{p['field']}: {p['message']}" for p in started.problems)
            raise actions.Invalid(f"its files are not valid now: {problems}", started.problems)
        return "Queued: it starts as soon as a worker prepares it.", started.campaign_id
    never = actions.cancel(db, campaign_id)
    return f"Cancelled: {never:,} people will not be sent their message.", campaign_id


# -- rendering ---------------------------------------------------------------------------


def _base(request: Request) -> str:
    """Where the console is mounted (``/console``): links are built from it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _render(
    request: Request, name: str, who: Caller | None, *, status: int = 200, **values: Any
) -> HTMLResponse:
    base = _base(request)
    shown = {
        "base": base,
        "api": base.rpartition("/")[0] + "/api",
        "caller": who,
        "can_send": who is not None and who.can(Scope.SEND),
        "csrf": auth.csrf_token(request),
        "now": f"{datetime.now(UTC):%H:%M:%S}",
        "page": "",
    } | values
    answer = templates.TemplateResponse(request, name, shown, status_code=status)
    answer.headers["Cache-Control"] = "no-store"
    return answer


def _next(request: Request, offered: str | None = None) -> str:
    """Where to go after login: a path of this console only (never another site)."""
    wanted = offered if offered is not None else request.query_params.get("next", "")
    base = _base(request)
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"{base}/"):
        return f"{base}/"
    return parts.path


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- filters -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    key: str
    label: str
    count: int
    percent: float


#: Parts of the bar that count people whose message has left (the progress bar's value).
LEFT = frozenset({"read", "delivered", "sent", "failed"})


@dataclass(frozen=True, slots=True)
class Stages:
    """A campaign's people as the bar shows them, each in one part."""

    total: int
    parts: tuple[Part, ...]
    waiting: int

    @property
    def done(self) -> int:
        return sum(part.count for part in self.parts if part.key in LEFT)

    @property
    def words(self) -> str:
        said = ", ".join(f"{part.count:,} {part.label}" for part in self.parts if part.count)
        return f"{self.done:,} of {self.total:,} people sent or failed" + (
            f": {said}, {self.waiting:,} waiting to send" if said else ""
        )


def stages(p: Progress, held: flower.Held | None = None) -> Stages:
    """Read, delivered (not read yet), sent (not delivered yet), failed, failed but
    waiting for a resend, and held (a sending window or the messaging tier's day):
    disjoint, so the bar's parts add up to the people at most."""
    total = max(p.messages, 0)
    room = total
    parts: list[Part] = []
    resend = min(p.awaiting_resend, p.failed)
    for key, label, count in (
        ("read", "read", p.read),
        ("delivered", "delivered, not read", p.delivered - p.read),
        ("sent", "sent, not delivered", max(p.submitted, p.sent) - p.delivered - p.failed),
        ("failed", "failed", p.failed - resend),
        ("resend", "waiting for resend", resend),
        ("held", "held by a window or tier", held.people if held else 0),
    ):
        count = max(0, min(count, room))
        room -= count
        parts.append(Part(key, label, count, round(100 * count / total, 2) if total else 0.0))
    return Stages(total, tuple(parts), room)


def figures(p: Progress) -> list[tuple[str, str]]:
    """The counts under the bar: the ones that always show, then those that count."""
    shown = [
        ("people", p.messages),
        ("rows read", p.loaded),
        ("rejected rows", p.rejected),
        ("duplicates merged", p.duplicates),
        (f"accepted by {p.provider}", p.submitted),
        ("sent", p.sent),
        ("delivered", p.delivered),
        ("read", p.read),
        ("failed", p.failed),
    ]
    optional = [
        ("waiting to send", p.waiting_to_send),
        ("waiting for resend", p.awaiting_resend),
        ("held for quality", p.held_for_quality),
        ("expired", p.expired),
        ("never sent (cancelled)", p.cancelled),
        ("resent to phone", p.resent_to_phone),
        ("replies", p.replies),
        *((f"skipped: {reason.replace('_', ' ')}", n) for reason, n in p.skipped.items()),
    ]
    values = [(label, f"{n:,}") for label, n in shown]
    values += [(label, f"{n:,}") for label, n in optional if n]
    values.append((f"send rate ({p.level})" if p.level else "send rate", rate(p)))
    values.append(("time left", duration(p.eta_seconds)))
    return values


def rate(p: Progress) -> str:
    """Messages a second now, of what the level allows now (lowered a while after
    Meta's rate-limit errors)."""
    if p.state != CampaignState.SENDING:
        return "-"
    if not p.rate_per_second:
        return f"{p.send_rate:.0f}/s"
    factor = 1.0 if p.rate_factor is None else p.rate_factor
    return f"{p.send_rate:.0f} of {max(1, int(p.rate_per_second * factor))}/s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def offered(state: str) -> list[Action]:
    return [ACTIONS[name] for name in OFFERED.get(state, ())]


templates.env.filters.update(
    stages=stages,
    figures=figures,
    rate=rate,
    duration=duration,
    actions=offered,
    count=lambda n: f"{int(n):,}",
    # Free text that may quote a row or an identifier: long digit runs masked.
    masked=insight.masked_text,
)
