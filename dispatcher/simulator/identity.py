"""Recipient identities: MSISDNs, BSUIDs and the contact book that links them.

Seed 'Terms and glossary' > 'BSUID': ``CC.<id>`` and parent ``CC.ENT.<id>``, where ``<id>`` is up
to 128 alphanumerics after the two-letter country code. Seed 'Contact book feature': once a phone
number has been messaged, Meta associates it with the user's BSUIDs, so DLRs for that user carry
the phone number as well ('BSUID - Message Status Notifications - DLRs (MT) updates').
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

MSISDN_RE = re.compile(r"\+?[0-9]{7,15}")
BSUID_RE = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
PARENT_BSUID_RE = re.compile(r"[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}")

# Country calling code -> ISO region; enough for realistic rehearsals, anything else is "ZZ".
_REGIONS: dict[str, str] = {
    "1": "US", "7": "RU", "20": "EG", "27": "ZA", "30": "GR", "31": "NL", "32": "BE",
    "33": "FR", "34": "ES", "36": "HU", "39": "IT", "40": "RO", "41": "CH", "43": "AT",
    "44": "GB", "45": "DK", "46": "SE", "47": "NO", "48": "PL", "49": "DE", "51": "PE",
    "52": "MX", "54": "AR", "55": "BR", "56": "CL", "57": "CO", "60": "MY", "61": "AU",
    "62": "ID", "63": "PH", "64": "NZ", "65": "SG", "66": "TH", "81": "JP", "82": "KR",
    "84": "VN", "86": "CN", "90": "TR", "91": "IN", "92": "PK", "212": "MA", "234": "NG",
    "254": "KE", "351": "PT", "352": "LU", "353": "IE", "354": "IS", "358": "FI",
    "370": "LT", "371": "LV", "372": "EE", "420": "CZ", "421": "SK", "966": "SA",
    "971": "AE", "972": "IL",
}  # fmt: skip


class Kind(Enum):
    MSISDN = "msisdn"
    BSUID = "bsuid"
    PARENT_BSUID = "parent_bsuid"


def classify(destination: str) -> tuple[Kind, str] | None:
    """Kind and canonical form of a destination (MSISDNs become ``+digits``), or None."""
    if MSISDN_RE.fullmatch(destination):
        return Kind.MSISDN, destination if destination[0] == "+" else "+" + destination
    if BSUID_RE.fullmatch(destination):
        return Kind.BSUID, destination
    if PARENT_BSUID_RE.fullmatch(destination):
        return Kind.PARENT_BSUID, destination
    return None


def region_of(msisdn: str) -> str:
    """Two-letter region of an international ``+digits`` number, "ZZ" when unknown."""
    digits = msisdn.lstrip("+")
    for length in (3, 2, 1):
        region = _REGIONS.get(digits[:length])
        if region:
            return region
    return "ZZ"


def _digits20(text: str, person: bytes) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=16, person=person).digest()
    return f"{int.from_bytes(digest, 'big') % 10**20:020d}"


def derive_bsuids(msisdn: str) -> tuple[str, str]:
    """Stable (BSUID, parent BSUID) the simulated Meta assigns to a phone number."""
    region = region_of(msisdn)
    return (
        f"{region}.{_digits20(msisdn, b'bsuid')}",
        f"{region}.ENT.{_digits20(msisdn, b'parent-bsuid')}",
    )


@dataclass(slots=True)
class Person:
    """One WhatsApp user; ``key`` is what the stats count them under (phone number if known)."""

    user_id: str
    parent_id: str
    msisdn: str | None = None

    @property
    def key(self) -> str:
        return self.msisdn or self.user_id


class ContactBook:
    """Who is behind each destination, learnt as messages are accepted."""

    def __init__(self) -> None:
        self._by_id: dict[str, Person] = {}

    def clear(self) -> None:
        self._by_id.clear()

    def resolve(self, kind: Kind, destination: str) -> tuple[Person, tuple[str, ...]]:
        """The person for a canonical destination, and the keys of persons merged into it.

        A BSUID never derived for a phone number yet is a user we only know by BSUID; the
        missing half of the pair is derived from it. If that user's phone number turns up later
        they become one person, and the caller moves the old keys' counts to the new one.
        """
        person = self._by_id.get(destination)
        if person is not None:
            return person, ()
        if kind is Kind.MSISDN:
            user_id, parent_id = derive_bsuids(destination)
            person = Person(user_id, parent_id, destination)
            merged: list[Person] = []
            for ident in (user_id, parent_id):
                known = self._by_id.get(ident)
                if known is not None and all(known is not other for other in merged):
                    merged.append(known)
            for old in merged:
                self._by_id[old.user_id] = self._by_id[old.parent_id] = person
            self._by_id[user_id] = self._by_id[parent_id] = self._by_id[destination] = person
            return person, tuple(old.key for old in merged)
        region = destination[:2]
        if kind is Kind.BSUID:
            person = Person(destination, f"{region}.ENT.{_digits20(destination, b'parent-of')}")
        else:
            person = Person(f"{region}.{_digits20(destination, b'child-of')}", destination)
        self._by_id[person.user_id] = self._by_id[person.parent_id] = person
        return person, ()
