"""The simulated gateway playing Meta's WhatsApp Cloud API next to LINK's API.

A subclass of the LINK side's :class:`~dispatcher.simulator.core.Simulator`, so both APIs
share one contact book (the same people, by phone number or BSUID), one set of books behind
``/_simulator/stats``, the same fates (``failure_rate``, ``read_rate``, ``scripted``, the
template book, care windows, unknown media) and the same callback dispatcher.

Where the Cloud API differs from LINK (Meta's reference; seeds 000 and 002):
- one person per request; the answer carries ``contacts[]`` and ``messages[].message_status``;
- over a number's throughput the send is refused at once with 130429 (LINK queues it and
  reports the failure later); more than the pair limit to one user is refused with 131056;
- template errors (132000, 132001, 132015, 132016) and 131062 (an authentication template
  to a BSUID, seed 000) are answers to the send, not statuses;
- statuses arrive as signed ``whatsapp_business_account`` webhooks (``statuses``).
"""

from __future__ import annotations

import hmac
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dispatcher.simulator.config import LEVEL_RATES, SimulatorConfig
from dispatcher.simulator.core import SenderStanding, Simulator
from dispatcher.simulator.identity import Kind, Person
from dispatcher.simulator.meta import sender_webhooks
from dispatcher.simulator.meta.errors import (
    BSUID_NOT_ALLOWED,
    INVALID_PARAMETER,
    PAIR_RATE_LIMIT,
    TEMPLATE_ERRORS,
    THROUGHPUT_REACHED,
    GraphError,
)
from dispatcher.simulator.meta.requests import ParsedSend
from dispatcher.simulator.meta.statuses import (
    BusinessNumber,
    StatusDelivery,
    signer,
    whatsapp_error,
)

ACCEPTED = "accepted"
# Meta's reference, 'Throughput': numbers in use with both the WhatsApp Business app and
# Cloud API have a fixed throughput of 20 messages per second.
BIZ_APP_MESSAGES_PER_SECOND = 20
HELD = "held_for_quality_assessment"  # seed 002 'Template held for Pacing'


@dataclass(slots=True)
class Sent:
    """An accepted send: its wamid and the answer's ``message_status``."""

    wamid: str
    person: Person
    message_status: str


class MetaSimulator(Simulator):
    """The LINK simulator, answering Meta's Cloud API as well."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.numbers = {
            number_id: BusinessNumber(
                number_id,
                _e164(display),
                config.meta_waba_id,
                on_biz_app=number_id in config.meta_biz_app_numbers,
            )
            for number_id, display in config.meta_phone_numbers.items()
        }
        self._envelopes = {number.id: number.envelope for number in self.numbers.values()}
        self._bearer = f"Bearer {config.meta_access_token}".encode()
        self._sign = signer(config.meta_app_secret)
        url = config.meta_webhook_url
        self._webhook_urls = [url] if url else []
        self._paced = frozenset(config.meta_paced_templates)
        self._pair_interval = config.meta_pair_interval_ms / 1000
        self._pairs: dict[str, tuple[float, float]] = {}  # user -> (allowance, when counted)
        self.meta_recorded: list[tuple[str, bytes]] = []  # (phone number id, body)
        self.meta_counts: Counter[str] = Counter()

    def reset(self) -> None:
        super().reset()
        self._pairs = {}
        self.meta_recorded = []
        self.meta_counts = Counter()

    def stats(self) -> dict[str, Any]:
        snapshot = super().stats()
        snapshot["meta"] = dict(self.meta_counts)
        return snapshot

    # -- policy ----------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        """``Authorization: Bearer <token>`` (Meta's reference), compared in constant time."""
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        given = b"Bearer " + token.strip().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self._bearer)

    def rate_of(self, number: BusinessNumber) -> int:
        """Messages a second the number may send: its level's (keyed by display number, as
        the LINK side's), or Meta's fixed 20 for a number also in the WhatsApp Business app."""
        if number.on_biz_app:
            return BIZ_APP_MESSAGES_PER_SECOND
        return LEVEL_RATES[self.level_of(number.display)]

    def refuse(self, error: GraphError) -> GraphError:
        self.reject(error.code)
        return error

    # -- the business's standing --------------------------------------------------------

    def set_template_status(
        self, name: str, language: str | None, status: str
    ) -> list[dict[str, Any]]:
        """As the LINK side's, and Meta's ``message_template_status_update`` webhook
        for each template whose status changed (when webhooks go anywhere)."""
        changed = super().set_template_status(name, language, status)
        for template in changed:
            self._tell(sender_webhooks.template_status(self.config.meta_waba_id, template))
        return changed

    def set_sender(
        self, number: str | None, health: str | None, quality: str | None
    ) -> dict[str, tuple[SenderStanding, SenderStanding]]:
        """As the LINK side's, and Meta's webhooks for what changed of its numbers: a
        ``phone_number_quality_update`` for a number flagged or unflagged, one
        ``account_update`` when the account turns BLOCKED (disabled) or back."""
        numbers = list(self.numbers.values())
        before = {n.display: self.standing_of(n.display) for n in numbers}
        changed = super().set_sender(number, health, quality)
        waba = self.config.meta_waba_id
        bans: set[str] = set()
        for display, old in before.items():
            new = self.standing_of(display)
            event = sender_webhooks.quality_event(old.quality, new.quality)
            if event is not None:
                tier = self.config.messaging_tier
                self._tell(sender_webhooks.quality_update(waba, display, event, tier))
            ban = sender_webhooks.ban_state(old.health, new.health)
            if ban is not None:
                bans.add(ban)
        for ban in sorted(bans):  # the account's: one webhook, whichever number
            self._tell(sender_webhooks.account_ban(waba, ban))
        return changed

    def _tell(self, body: bytes) -> None:
        """Post one signed webhook about the business, retried as Meta retries."""
        if self._webhook_urls:
            self.meta_counts["sender_webhooks"] += 1
            self.callbacks.submit(
                self._webhook_urls,
                sender_webhooks.SenderWebhook(body),
                sign=self._sign,
                retry_refusals=True,
            )

    # -- messages --------------------------------------------------------------------------

    def send(self, number: BusinessNumber, parsed: ParsedSend) -> Sent | GraphError:
        """Refuse the send with a Graph error, or accept it and plan its status webhooks."""
        message = parsed.message
        category = self._template_check(parsed)
        if isinstance(category, GraphError):
            return self.refuse(category)
        books = self.books
        display = number.display
        second = int(time.time())
        buckets = books.per_second.setdefault(display, {})
        sent_this_second = buckets.get(second, 0) + 1
        if sent_this_second > self.rate_of(number):
            if self.config.enforce_level:
                return self.refuse(THROUGHPUT_REACHED)
            books.excess_over_level[display] += 1
        person = self.person(parsed.kind, parsed.destination)
        if not self._pair_allows(person.key):
            return self.refuse(PAIR_RATE_LIMIT)
        buckets[second] = sent_this_second
        self.count_request()
        if parsed.opaque is not None:
            books.ref_ids[parsed.opaque] += 1
        books.destinations[parsed.destination] += 1
        books.users[person.key] += 1
        books.accepted_messages += 1
        wamid = "wamid." + self.ids.message_id()
        held = self._held(parsed)
        if self._webhook_urls:
            statuses = self.fate(message, parsed.destination, throttled=False)
            if statuses:
                delivery = StatusDelivery(
                    wamid,
                    number,
                    self._envelopes[number.id],
                    person,
                    parsed.kind,
                    parsed.destination,
                    parsed.opaque,
                    statuses,
                    category,
                    self.config.meta_parent_bsuids,
                )
                self.callbacks.submit(
                    self._webhook_urls, delivery, sign=self._sign, retry_refusals=True
                )
        return Sent(wamid, person, HELD if held else ACCEPTED)

    def _template_check(self, parsed: ParsedSend) -> str | GraphError | None:
        """A template send's pricing category, or the error it is refused with (Meta's
        reference: template errors answer the send); None for other messages."""
        use = parsed.message.template
        if use is None:
            return None
        failure = self.templates.failure(use)
        if failure is not None:
            return TEMPLATE_ERRORS.get(whatsapp_error(failure)[0], INVALID_PARAMETER)
        category = self.templates.category(use)
        if category == "authentication" and parsed.kind is not Kind.MSISDN:
            return BSUID_NOT_ALLOWED
        return category

    def _held(self, parsed: ParsedSend) -> bool:
        """Whether template pacing holds this send (seed 002 'Template held for Pacing')."""
        use = parsed.message.template
        rate = self.config.meta_hold_rate
        held = use is not None and (
            use.name in self._paced or (rate > 0 and self.rng.random() < rate)
        )
        if held:
            self.meta_counts["held"] += 1
        return held

    def answer(self, parsed: ParsedSend, sent: Sent) -> bytes:
        """Seed 000's answer: ``contacts[0]`` has ``wa_id`` for a send to a phone number,
        ``user_id`` (and the parent BSUID when enabled and used) for one to a BSUID."""
        if parsed.kind is Kind.MSISDN:
            contact = f'"input":"{parsed.given}","wa_id":"{parsed.destination[1:]}"'
        else:
            contact = f'"input":"{parsed.given}","user_id":"{sent.person.user_id}"'
            if parsed.kind is Kind.PARENT_BSUID and self.config.meta_parent_bsuids:
                contact += f',"parent_user_id":"{sent.person.parent_id}"'
        return (
            f'{{"messaging_product":"whatsapp","contacts":[{{{contact}}}],"messages":'
            f'[{{"id":"{sent.wamid}","message_status":"{sent.message_status}"}}]}}'
        ).encode()

    def _pair_allows(self, user: str) -> bool:
        """Meta's pair rate limit as a bucket: ``meta_pair_burst`` sends, refilled by one
        every ``meta_pair_interval_ms``."""
        burst = self.config.meta_pair_burst
        if not burst:
            return True
        now = time.monotonic()
        allowance, then = self._pairs.get(user, (float(burst), now))
        allowance = min(float(burst), allowance + (now - then) / self._pair_interval)
        if allowance < 1:
            self._pairs[user] = (allowance, now)
            return False
        self._pairs[user] = (allowance - 1, now)
        return True


def _e164(display: str) -> str:
    digits = "".join(ch for ch in display if ch.isdigit())
    return "+" + digits
