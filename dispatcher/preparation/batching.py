"""People into batches: who gets which message, grouped into shared requests.

The rules that leave a person out (opted out, outside the customer care window, an
authentication template with no phone number) are applied here, person by person,
while the message is composed. People with the same message, and with a sending window
in each recipient's time zone the same zone, share a batch (one request); the
messaging tier holds the batches beyond the people it allows today. The batches are
handed, a chunk at a time, to the committer (``dispatcher.preparation.inserts``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from dispatcher.audience.passes import SUPPRESSED, Audience
from dispatcher.audience.recipients import Reject
from dispatcher.campaigns.compose import composer, content_key, json_bytes
from dispatcher.campaigns.message_spec import InvalidMessage
from dispatcher.campaigns.render import MissingValue
from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.guardrails.caps import Capped
from dispatcher.preparation.sender_checks import TIER_PERIOD
from dispatcher.sending.windows import RECIPIENT, zone_of

#: Messages written per transaction; each commit hands its batches out.
CHUNK_MESSAGES = 10_000
#: People waiting in partly filled groups before those groups are cut as they are.
OPEN_LIMIT = 20_000
_COMPOSE_CACHE = 65_536


@dataclass(slots=True)
class Known:
    """What the database knows about the audience, looked up between the passes."""

    suppressed: bytearray  # by graph root (``Audience.marks``)
    windows: bytearray | None  # people with an open care window, when that matters
    already: bytearray  # people an interrupted preparation wrote
    next_seq: int
    #: identifiers of the list a change retired (the book holds them no more): the list
    #: does not teach the book about them
    retired: frozenset[str] = frozenset()
    #: people at the frequency cap (by graph root): their skipped message's description
    #: (``guardrails.caps``)
    capped: dict[int, str] | None = None
    #: ``members`` puts here the messages of the people at the cap, to be written skipped
    over_cap: list[Capped] = field(default_factory=list)


#: One message as the writer keeps it: identity key, destination, identifiers, CSV
#: line, and the JSON of the values the message used.
Member = tuple[str, str, list[str], int, str]


def _zone_prefix(spec: CampaignSpec) -> Callable[[str], str]:
    """With a sending window in each recipient's time zone, people of one zone share
    requests (a request is held or sent whole): the zone leads the grouping key."""
    window = spec.sending_window
    if window is None or window.time_zone != RECIPIENT:
        return lambda _: ""
    fallback = window.fallback_time_zone
    return lambda destination: f"{zone_of(destination, fallback)}\x1f"


def members(
    spec: CampaignSpec, audience: Audience, known: Known, media_ids: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any], Member] | Reject]:
    """Each person's message (its grouping key, the message, the member), or the
    reason the person is left out. A person at the frequency cap goes to
    ``known.over_cap`` instead (written ``skipped``, never sent).

    * authentication templates never go to a BSUID (seed 004 'BSUID Limitations',
      Meta error 131062): such people are sent to their phone number, or not at all;
    * a non-template message needs an open customer care window: a message from the
      person within 24 h (unless the spec says ``outside_care_window: send``).

    Composing validates the whole message (about 40 us), so it is done once per
    distinct set of values the message uses, not once per person. A million people
    pass through here: nothing is built that the writer does not keep.
    """
    used = sorted(spec.placeholders() | set(spec.defaults))
    authentication = spec.authentication
    suppressed, windows, already = known.suppressed, known.windows, known.already
    capped, over_cap = known.capped or {}, known.over_cap
    positions: dict[Path, list[int | None]] = {}  # per file: where each used column is
    zone_prefix = _zone_prefix(spec)
    compose = composer(spec, media_ids)

    @lru_cache(maxsize=_COMPOSE_CACHE)
    def composed(values: tuple[str, ...]) -> tuple[str, dict[str, Any], str] | str:
        named = dict(zip(used, values, strict=True))
        try:
            message = compose(named)
        except MissingValue as exc:
            return f"missing value for '{exc.column}'"
        except InvalidMessage as exc:
            return f"the message for this row is invalid: {exc}"
        return content_key(message), message, json_text(named)

    for root, recipients, line, cells in audience.firsts():
        if already[root]:
            continue
        if suppressed[root]:
            yield Reject(recipients.path, line, SUPPRESSED, recipients.values(cells))
            continue
        if windows is not None and not windows[root]:
            yield Reject(recipients.path, line, "outside the 24-hour customer care window "
                         "(no message from this person in the last 24 h)",
                         recipients.values(cells))  # fmt: skip
            continue
        identity = audience.identity(root, phones_only=authentication)
        if identity is None:
            # Nobody to send to at all (every identifier barred), or no phone number for
            # an authentication template.
            barred = audience.identity(root) is None and audience.graph.unreachable(root)
            why = barred or ("authentication templates cannot be sent to a BSUID (Meta "
                             "error 131062) and no phone number is known")  # fmt: skip
            yield Reject(recipients.path, line, why, recipients.values(cells))
            continue
        where = positions.get(recipients.path)
        if where is None:
            where = positions[recipients.path] = [
                recipients.columns.index(c) if c in recipients.columns else None for c in used
            ]
        values = tuple("" if i is None else cells[i] for i in where)
        result = composed(values)
        if isinstance(result, str):
            yield Reject(recipients.path, line, result, recipients.values(cells))
            continue
        key, message, params = result
        if capped and (said := capped.get(root)) is not None:
            over_cap.append(Capped((*identity, line, params), said))
            continue
        yield zone_prefix(identity[1]) + key, message, (*identity, line, params)


def tiling(batch_size: int, level: int) -> int:
    """The largest batch size that divides ``level`` and is at most ``batch_size``."""
    return max(size for size in range(1, min(batch_size, level) + 1) if level % size == 0)


@dataclass(slots=True)
class Batch:
    id: str
    seq: int
    payload: dict[str, Any]
    members: list[Member]
    not_before: datetime | None = None  # held by the messaging tier until then
    waiting: bool = False  # after the canary: stored, sent once the canary is judged


class Writer:
    """Groups people with identical messages into batches, committing in chunks.

    Batches tile the sender's level: a request of ``batch_size`` that does not divide
    the level leaves room in every 1-second window that no whole request fits (two of
    50 never fit in 80: one leaves every second, 50 msg/s). So every full batch has the
    largest size that divides the level and is at most ``batch_size`` (80: 40; 1000 at
    80: 50): requests of one size, whichever workers send them in whatever order, fill
    each window exactly. A group is cut when it holds that many people. Groups that stay
    small (a personalised message makes every person a group of one) are cut as they
    are once ``OPEN_LIMIT`` people wait, so memory stays bounded.

    The messaging tier: once ``room`` people are in batches, later batches are held,
    the next ``cap`` people for 24 hours, the next for 48, and so on (``held`` names
    them; a periodic task releases them, ``release_held``).

    A canary of ``canary`` people: the first people added fill batches of their own
    (sent at once); once they are all in, every later batch is ``waiting`` (``waiting``
    names them) until the canary is judged (``dispatcher.guardrails.canary``). The
    canary's batches are the sequence numbers ``next_seq`` .. ``canary_last_seq``.
    """

    def __init__(
        self,
        campaign_id: int,
        batch_size: int,
        next_seq: int,
        commit: Callable[[list[Batch]], None],
        *,
        room: int | None = None,
        cap: int | None = None,
        level: int | None = None,
        canary: int | None = None,
    ) -> None:
        self.campaign_id = campaign_id
        self.batch_size = tiling(batch_size, level or batch_size)
        self.seq = next_seq
        self.commit = commit
        self.room = room
        self.cap = cap or 1
        self.started = datetime.now(UTC)
        self.held: set[str] = set()
        self.waiting: set[str] = set()
        self.canary_people = 0
        # 0: a resumed preparation whose canary is stored: everyone left waits.
        self.canary_last_seq: int | None = next_seq - 1 if canary == 0 else None
        self._canary_left = canary
        self.messages = 0
        self._cut_people = 0
        self._groups: dict[str, tuple[dict[str, Any], list[Member]]] = {}
        self._waiting = 0
        self._ready: list[Batch] = []
        self._ready_messages = 0

    def add(self, key: str, message: dict[str, Any], member: Member) -> None:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = (message, [])
        group[1].append(member)
        self._waiting += 1
        self.messages += 1
        if len(group[1]) >= self.batch_size:
            self._cut(key)
        elif self._waiting >= OPEN_LIMIT:
            self._cut_all()
        if self._canary_left:
            self.canary_people += 1
            self._canary_left -= 1
            if not self._canary_left:
                self._close_canary()
        if self._ready_messages >= CHUNK_MESSAGES:
            self._flush()

    def close(self) -> None:
        self._cut_all()
        if self._canary_left:
            self._close_canary()  # fewer people than the canary: everyone is in it
        self._flush()

    def _close_canary(self) -> None:
        """The canary's people are all in: its open groups are cut now, so its batches
        are the ones before every waiting batch."""
        self._cut_all()
        self._canary_left = 0
        self.canary_last_seq = self.seq - 1

    def _cut_all(self) -> None:
        for key in list(self._groups):
            self._cut(key)

    def _cut(self, key: str) -> None:
        """Cut a group into a batch; split where the messaging tier's day ends, so each
        day's cap is used to the person whatever size the batches have."""
        message, members = self._groups.pop(key)
        while members:
            take = len(members)
            if self.room is not None:
                edge = self._day_edge()
                if self._cut_people < edge < self._cut_people + take:
                    take = edge - self._cut_people
            self._batch(message, members[:take])
            members = members[take:]

    def _day_edge(self) -> int:
        """Where the people the tier allows today (then each later day) end."""
        assert self.room is not None
        if self._cut_people < self.room:
            return self.room
        return self.room + self.cap * (1 + (self._cut_people - self.room) // self.cap)

    def _batch(self, message: dict[str, Any], members: list[Member]) -> None:
        batch_id = f"c{self.campaign_id}-b{self.seq:06d}"
        not_before = None
        if self.room is not None and self._cut_people + len(members) > self.room:
            days = 1 + max(0, self._cut_people - self.room) // self.cap
            not_before = self.started + days * TIER_PERIOD
            self.held.add(batch_id)
        self._cut_people += len(members)
        waiting = self.canary_last_seq is not None
        if waiting:
            self.waiting.add(batch_id)
        self._ready.append(
            Batch(batch_id, self.seq, {"messages": [message]}, members, not_before, waiting)
        )
        self.seq += 1
        self._waiting -= len(members)
        self._ready_messages += len(members)

    def _flush(self) -> None:
        if self._ready:
            self.commit(self._ready)
        self._ready = []
        self._ready_messages = 0


def json_text(value: Any) -> str:
    """JSON columns go to ``COPY`` as their text."""
    return json_bytes(value).decode()
