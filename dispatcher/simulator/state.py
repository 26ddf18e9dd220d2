"""Accounting of what the simulated gateway accepted, for tests and benchmarks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class MediaRecord:
    id: str
    sha256: str
    content_type: str
    size: int
    source: str


@dataclass(slots=True)
class Accounting:
    """Counters behind ``GET /_simulator/stats``.

    A "message" is one WhatsApp message: one destination times one entry of ``messages``.
    ``users`` counts per person, so an MSISDN and the BSUIDs derived for it add up together and
    a double send to one user shows as 2 even when it used both identifiers.
    """

    requests: int = 0
    rejected_requests: Counter[int] = field(default_factory=Counter)
    accepted_messages: int = 0
    per_second: dict[str, dict[int, int]] = field(default_factory=dict)
    excess_over_level: Counter[str] = field(default_factory=Counter)
    destinations: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)
    ref_ids: Counter[str] = field(default_factory=Counter)
    media: dict[str, MediaRecord] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)  # accepted, then hung or dropped
    upload_failures: int = 0  # uploads answered with SimulatorConfig.upload_failure_code

    def merge_user(self, old_key: str, new_key: str) -> None:
        """Move the counts of a person known only by BSUID to the phone number found for them."""
        if old_key != new_key and old_key in self.users:
            self.users[new_key] += self.users.pop(old_key)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy; each dict is copied at C level, so it is safe from other threads."""
        per_second = {
            source: {str(second): count for second, count in list(buckets.items())}
            for source, buckets in list(self.per_second.items())
        }
        return {
            "requests": self.requests,
            "rejected_requests": {str(code): n for code, n in list(self.rejected_requests.items())},
            "accepted_messages": self.accepted_messages,
            "per_second": per_second,
            "max_per_second": {
                source: max(buckets.values(), default=0) for source, buckets in per_second.items()
            },
            "excess_over_level": {
                source: self.excess_over_level.get(source, 0) for source in per_second
            },
            "destinations": dict(self.destinations),
            "faults": dict(self.faults),
            "users": dict(self.users),
            "ref_ids": dict(self.ref_ids),
            "media_uploads": len(self.media),
            "upload_failures": self.upload_failures,
            "media": [
                {
                    "id": record.id,
                    "sha256": record.sha256,
                    "content_type": record.content_type,
                    "size": record.size,
                    "source": record.source,
                }
                for record in list(self.media.values())
            ],
        }
