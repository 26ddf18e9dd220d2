"""Asking for the number: the follow-up a spec's ``ask_for_number`` sends.

Users who adopt usernames stop sharing their number (seed 004, BSUID section); the
documented way back is a ``contact_request`` (or a template's REQUEST_CONTACT_INFO
button), answered by a contacts message the identity book learns from. A campaign
sends one message per person (the unique key on messages), so the follow-up is a
campaign of its own, registered when its campaign completes: to the people the
campaign reached (delivered, read or deleted) whose only identifiers are BSUIDs, then
and in the identity book. It is stored ``scheduled`` without a time, so beat starts it
at once (``schedules.start_due``); its recipients file (their BSUIDs and the values
the campaign's message used) is stored with it like any campaign's, and preparation
applies every rule to it: opt-outs, portfolios, the customer care window.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.campaigns import inputs
from dispatcher.campaigns.registration import inputs_digest
from dispatcher.campaigns.spec import (
    ASK_COLUMNS,
    IDENTIFIER_COLUMNS,
    CampaignSpec,
    LoadedCampaign,
)
from dispatcher.db import Campaign, Message
from dispatcher.status import CampaignState, MessageStatus

log = logging.getLogger(__name__)

#: Whom the follow-up asks: people the campaign's message reached.
REACHED = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.DELETED)
#: How a campaign's notes name its follow-up (and so register it once).
NOTE = "ask_for_number: campaign {child} asks {people} people known only by BSUID"
NOBODY = "ask_for_number: nobody it reached is known only by BSUID; no follow-up"
RECIPIENTS = "ask-for-number.csv"
_NAME_SUFFIX = " (ask for number)"


def on_completed(session: Session, campaign_id: int) -> int | None:
    """Register the follow-up of a campaign that just completed, once; returns its id.
    A follow-up that cannot be registered is noted on the campaign and logged: it
    never keeps the campaign from completing."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not (campaign.spec or {}).get("ask_for_number"):
        return None
    if any(note.startswith("ask_for_number:") for note in campaign.notes or ()):
        return None  # completed before (a resend reopened it)
    try:
        with session.begin_nested():
            child = register(session, campaign)
    except Exception as exc:  # a bug or bad data must not hold the campaign's completion
        log.exception("campaign %s: its ask_for_number follow-up failed", campaign_id)
        _note(campaign, f"ask_for_number: the follow-up could not be registered: {exc}")
        return None
    return child


def register(session: Session, campaign: Campaign) -> int | None:
    """Store the follow-up of ``campaign`` (None when nobody needs it); noted on both."""
    spec = CampaignSpec.model_validate(campaign.spec)
    assert spec.ask_for_number is not None
    people = list(bsuid_only(session, campaign.id))
    if not people:
        _note(campaign, NOBODY)
        return None
    values = sorted({k for _, row in people for k in row} - IDENTIFIER_COLUMNS)
    name = spec.name[: 200 - len(_NAME_SUFFIX)] + _NAME_SUFFIX
    with tempfile.TemporaryDirectory(prefix=f"campaign-{campaign.id}-ask-") as tmp:
        folder = Path(tmp)
        with (folder / RECIPIENTS).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*ASK_COLUMNS, *values])
            for identifiers, row in people:
                writer.writerow([*identifiers, *(row.get(k, "") for k in values)])
        data = spec.model_dump(mode="json") | {
            "name": name,
            "message": spec.ask_for_number,
            "ask_for_number": None,
            "template_category": None,  # the provider's list says (prepare)
            "recipients": [RECIPIENTS],
            "columns": {},
            "send_at": None,
            "allow_repeat": True,
        }
        child_spec = CampaignSpec.model_validate(data)
        spec_path = folder / "campaign.yaml"
        spec_path.write_text(yaml.safe_dump(child_spec.model_dump(mode="json")), "utf-8")
        loaded = LoadedCampaign(spec=child_spec, spec_path=spec_path)
        child = Campaign(
            name=name,
            spec=child_spec.model_dump(mode="json"),
            # Its reports go beside the campaign's when that host has the folder.
            spec_path=campaign.spec_path,
            source=campaign.source,
            state=CampaignState.SCHEDULED,  # no send_at: beat starts it now
            inputs_sha256=inputs_digest(loaded),
            notes=[f"asks the people of campaign {campaign.id} known only by BSUID for a number"],
        )
        session.add(child)
        session.flush()
        inputs.store_inputs(session, child.id, loaded)
    _note(campaign, NOTE.format(child=child.id, people=len(people)))
    log.info("campaign %s: campaign %s asks %d people for their number", campaign.id,
             child.id, len(people))  # fmt: skip
    return child.id


def bsuid_only(session: Session, campaign_id: int) -> Iterator[tuple[list[str], dict[str, str]]]:
    """([BSUID, parent BSUID or ''], the values the message used) of each person the
    campaign reached whose identifiers are BSUIDs alone, then and now (the book may
    have learned a number since)."""
    found: list[tuple[list[str], dict[str, Any]]] = []
    rows = session.execute(
        select(Message.identifiers, Message.destination, Message.params)
        .where(Message.campaign_id == campaign_id, Message.status.in_(REACHED))
        .order_by(Message.source_line)
        .execution_options(yield_per=1000)
    )
    for identifiers, destination, params in rows:
        every = list(identifiers or [destination])
        if all(book.kind_of(i) in ("bsuid", "parent_bsuid") for i in every):
            found.append((every, params or {}))
    if not found:
        return
    known = book.lookup(session, {i for every, _ in found for i in every})
    with_number = {key for identifier, key in known.items() if book.kind_of(identifier) == "msisdn"}
    for every, params in found:
        if any(known.get(i) in with_number for i in every):
            continue
        bsuid = next((i for i in every if book.kind_of(i) == "bsuid"), "")
        parent = next((i for i in every if book.kind_of(i) == "parent_bsuid"), "")
        yield [bsuid, parent], {str(k): "" if v is None else str(v) for k, v in params.items()}


def _note(campaign: Campaign, note: str) -> None:
    campaign.notes = [*(campaign.notes or ()), note]
