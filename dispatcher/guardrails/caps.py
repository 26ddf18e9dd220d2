"""Frequency caps: at most N marketing messages to a person per rolling period from one
business portfolio, across every campaign (spec ``frequency_cap`` or the
FREQUENCY_CAP setting; off by default).

What counts, for a person (every identifier the audience graph and the identity book
give them):

* messages of the portfolio's other marketing campaigns (``Settings.portfolio_of``:
  every sender number sharing it) to any of those identifiers, submitted within the
  period. A message the provider never took (failed or expired before it left), a
  cancelled or a skipped one never reached anyone and does not count. A message's
  ``destination`` is matched: the identity book links a person's number and BSUIDs
  (a list row that names both teaches it), so the person's identifiers include it;
* messages still waiting to leave (pending or queued) in a campaign that is sending,
  preparing or paused: they will reach the person shortly, and counting only what
  has left would let two campaigns in flight both write the person. They count as
  sent now; a cancellation later only makes the cap stricter than it had to be.

Marketing: Meta prices and caps by the template's category. A template campaign is
marketing unless its category is known to be something else: the spec's
``template_category``, or what the provider's template list says in pre-flight (stored
on the campaign then, so later campaigns see it). A category nobody states counts as
marketing: the cap is a protection the operator switched on, and Meta files a template
of mixed content as marketing. Messages other than templates answer a person inside
their care window and are neither capped nor counted.

Two campaigns of one portfolio prepared at once would each look before the other
wrote its people. On PostgreSQL a capped campaign's preparation holds an advisory lock
per portfolio (``exclusive``) from the lookup until its messages are written: the
next one looks after them and counts them. A lock, not a re-check after writing: a
re-check would have to take messages back out of batches already handed to workers.
SQLite (the embedded mode, one worker) prepares one campaign at a time and takes none.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec, TemplateCategory
from dispatcher.db import Campaign, Database, Message
from dispatcher.db.bulk import dialect_name, unnested
from dispatcher.db.timestamps import aware
from dispatcher.guardrails.policy import FrequencyCap, describe_duration
from dispatcher.providers import TemplateInfo
from dispatcher.settings import Settings
from dispatcher.status import CampaignState, MessageStatus, SkipReason

K = TypeVar("K")

#: Campaigns whose waiting messages will still leave.
_LIVE = (CampaignState.PREPARING, CampaignState.SENDING, CampaignState.PAUSED)
#: Campaigns that never sent anything.
_UNSENT = (CampaignState.DRAFT, CampaignState.SCHEDULED, CampaignState.PREVIEWED)
_WAITING = (MessageStatus.PENDING, MessageStatus.QUEUED)
#: SQLite takes at most 32766 parameters per statement.
_SQLITE_CHUNK = 5_000
#: ``pg_advisory_lock(namespace, key)``: the namespace of frequency-cap locks.
_LOCK_NAMESPACE = 0x4643  # "FC"


def effective(spec: CampaignSpec, settings: Settings) -> FrequencyCap | None:
    """The cap this campaign honours: its spec's, else the setting's; "off" opts out."""
    if spec.frequency_cap == "off":
        return None
    return spec.frequency_cap or settings.frequency_cap


def marketing(spec: CampaignSpec) -> bool:
    """A template campaign whose category is marketing or not stated (module docstring)."""
    return spec.is_template and spec.template_category in (None, TemplateCategory.MARKETING)


def learned_category(spec: CampaignSpec, template: TemplateInfo | None) -> TemplateCategory | None:
    """The provider's category for the campaign's template when it differs from the
    spec's (the provider's is what Meta applies), else None."""
    if template is None or not template.category:
        return None
    try:
        listed = TemplateCategory(template.category.lower())
    except ValueError:
        return None
    return None if listed is spec.template_category else listed


def store_category(
    db: Database, campaign_id: int, spec: CampaignSpec, template: TemplateInfo | None
) -> CampaignSpec:
    """The spec with the provider's category of its template, stored on the campaign when
    it differs from the spec's: later campaigns' caps count this one by it."""
    listed = learned_category(spec, template)
    if listed is None:
        return spec
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            campaign.spec = {**campaign.spec, "template_category": listed.value}
    return spec.model_copy(update={"template_category": listed})


def _is_marketing(raw_spec: dict[str, Any] | None) -> bool:
    spec = raw_spec or {}
    message = spec.get("message")
    if not (isinstance(message, dict) and message.get("type") == "template"):
        return False
    return str(spec.get("template_category") or TemplateCategory.MARKETING).lower() == (
        TemplateCategory.MARKETING.value
    )


@dataclass(frozen=True, slots=True)
class Over:
    """A person at the cap: the messages counted in the period, and from when one more
    may be sent."""

    count: int
    eligible_at: datetime


def eligible_at(times: Iterable[datetime], cap: FrequencyCap, now: datetime) -> Over | None:
    """When a person who received messages at ``times`` may receive one more, or None
    when they may now. Only times within ``period`` before ``now`` count; with ``k`` of
    them (oldest first) and a cap of ``n``, one more fits once ``k - n + 1`` have left
    the window: at the ``(k - n + 1)``-th oldest plus the period."""
    since = now - cap.period
    recent = sorted(t for t in times if since <= t)
    if len(recent) < cap.messages:
        return None
    return Over(len(recent), recent[len(recent) - cap.messages] + cap.period)


def describe(cap: FrequencyCap, over: Over) -> str:
    """The skipped message's description: the cap, the count and the eligible date."""
    period = describe_duration(cap.period)
    noun = "message" if over.count == 1 else "messages"
    return (
        f"not sent: {over.count} marketing {noun} in the last {period} from this portfolio "
        f"already (frequency cap {cap.messages} per {period}); eligible from "
        f"{minute_up(over.eligible_at):%Y-%m-%d %H:%M} UTC"
    )


def minute_up(moment: datetime) -> datetime:
    """``moment`` in UTC, rounded up to the minute: "eligible from 14:01" is never early."""
    utc = moment.astimezone(UTC)
    whole = utc.replace(second=0, microsecond=0)
    return whole if whole == utc else whole + timedelta(minutes=1)


def counted_campaigns(
    session: Session,
    portfolio_numbers: Collection[str],
    since: datetime,
    exclude: int | None = None,
) -> tuple[list[int], list[int]]:
    """The portfolio's marketing campaigns that may have sent since ``since``, and those
    of them whose waiting messages will still leave."""
    rows = session.execute(
        select(Campaign.id, Campaign.state, Campaign.spec).where(
            Campaign.source.in_(sorted(portfolio_numbers)),
            Campaign.state.not_in(_UNSENT),
            or_(Campaign.finished_at.is_(None), Campaign.finished_at >= since),
        )
    ).all()
    counted = [c for c, _, raw in rows if c != exclude and _is_marketing(raw)]
    live = [c for c, state, raw in rows if c in counted and state in _LIVE]
    return sorted(counted), sorted(live)


def sent_to(
    session: Session,
    portfolio_numbers: Collection[str],
    identifiers: Collection[str],
    since: datetime,
    now: datetime,
    exclude: int | None = None,
) -> Iterator[tuple[str, datetime]]:
    """``(identifier, when)`` for each counted message (module docstring) to one of
    ``identifiers`` since ``since``; a waiting message is counted at ``now``. One
    statement on PostgreSQL whatever the number of identifiers (a hash join of the list
    against the counted campaigns' messages), chunks on SQLite."""
    counted, live = counted_campaigns(session, portfolio_numbers, since, exclude)
    if not counted or not identifiers:
        return
    m = Message
    left = m.submitted_at >= since
    waiting = m.submitted_at.is_(None) & m.status.in_(_WAITING)
    if live:
        left = or_(left, waiting & m.campaign_id.in_(live))
    where = (
        m.campaign_id.in_(counted),
        left,
        m.status.not_in((MessageStatus.CANCELLED, MessageStatus.SKIPPED)),
    )
    ordered = sorted(identifiers)
    given = unnested(session, m.destination, ordered)
    if given is not None:
        queries = [
            select(m.destination, m.submitted_at)
            .join(given, m.destination == given.c.value)
            .where(*where)
        ]
    else:
        queries = [
            select(m.destination, m.submitted_at).where(
                m.destination.in_(ordered[i : i + _SQLITE_CHUNK]), *where
            )
            for i in range(0, len(ordered), _SQLITE_CHUNK)
        ]
    connection = session.connection()  # Core rows: no ORM work per row
    for query in queries:
        for destination, submitted_at in connection.execute(query):
            yield destination, now if submitted_at is None else aware(submitted_at)


def over_cap(
    session: Session,
    cap: FrequencyCap,
    portfolio_numbers: Collection[str],
    person_of: Mapping[str, K],
    now: datetime,
    exclude: int | None = None,
) -> dict[K, Over]:
    """The people at the cap (``person_of``: each identifier's person) and when each may
    receive a marketing message again."""
    times: dict[K, list[datetime]] = {}
    for identifier, when in sent_to(session, portfolio_numbers, person_of.keys(),
                                    now - cap.period, now, exclude):  # fmt: skip
        times.setdefault(person_of[identifier], []).append(when)
    most = cap.messages
    found = {p: eligible_at(ts, cap, now) for p, ts in times.items() if len(ts) >= most}
    return {person: over for person, over in found.items() if over is not None}


def capped(
    session: Session,
    cap: FrequencyCap | None,
    portfolio_numbers: Collection[str],
    persons: Mapping[str, Collection[str]],
    now: datetime | None = None,
    exclude: int | None = None,
) -> dict[str, datetime]:
    """Person key -> when they become eligible again, for the people of ``persons``
    (key -> every identifier of the person) a marketing campaign of this portfolio may
    not send to now; ``exclude`` leaves a campaign's own messages out. Empty without a
    cap. For the forecast and for preparation alike."""
    if cap is None:
        return {}
    person_of = {i: key for key, ids in persons.items() for i in ids}
    found = over_cap(session, cap, portfolio_numbers, person_of, now or datetime.now(UTC), exclude)
    return {key: over.eligible_at for key, over in found.items()}


@contextlib.contextmanager
def exclusive(db: Database, portfolio: str) -> Iterator[None]:
    """Hold the portfolio's frequency-cap lock (PostgreSQL; nothing on SQLite) on a
    connection of its own: released on exit, or by the server if the worker dies."""
    if db.engine.dialect.name != "postgresql":
        yield
        return
    key = zlib.crc32(portfolio.encode()) - (1 << 31)  # a signed 32-bit int
    with db.engine.connect() as connection:
        connection.execute(
            text("SELECT pg_advisory_lock(:n, :k)"), {"n": _LOCK_NAMESPACE, "k": key}
        )
        try:
            yield
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(:n, :k)"), {"n": _LOCK_NAMESPACE, "k": key}
            )
            connection.commit()


#: A message as preparation writes it (``preparation.batching.Member``): identity key,
#: destination, identifiers, CSV line, and the JSON of the values the message used.
Member = tuple[str, str, list[str], int, str]


@dataclass(frozen=True, slots=True)
class Capped:
    """A person at the cap: written as a ``skipped`` message, never sent."""

    member: Member
    description: str


_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_WRITE_CHUNK = 5_000


def write_skipped(db: Database, campaign_id: int, people: Sequence[Capped]) -> int:
    """Store the capped people as ``skipped`` messages (``SkipReason.FREQUENCY_CAP``,
    the cap and the eligible date in the description) for ``status`` and the report.
    A preparation run again finds them stored (a person once). Returns how many were
    given."""
    now = datetime.now(UTC)
    reason = SkipReason.FREQUENCY_CAP.value
    for start in range(0, len(people), _WRITE_CHUNK):
        rows = [
            {"campaign_id": campaign_id, "identity_key": key, "destination": destination,
             "identifiers": identifiers, "source_line": line, "params": json.loads(params),
             "status": MessageStatus.SKIPPED.value, "attempts": 0, "updated_at": now,
             "skip_reason": reason, "result_description": person.description}
            for person in people[start : start + _WRITE_CHUNK]
            for key, destination, identifiers, line, params in (person.member,)
        ]  # fmt: skip
        with db.session() as session:
            dialect: Any = postgresql if dialect_name(session) == "postgresql" else sqlite
            session.execute(dialect.insert(_MESSAGES).on_conflict_do_nothing(), rows)
    return len(people)
