"""The guardrails' periodic look at the sending campaigns (``workers.tasks.guard``,
every 2 s): judge each canary not yet judged, and each campaign's failure classes over
its rolling window.

One tick at a time across all workers (a Redis lease): two would judge the same
outcomes twice. A campaign whose judging breaks is logged and skipped; the others go on.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import select

from dispatcher.db import Campaign, Database
from dispatcher.db.timestamps import aware
from dispatcher.guardrails import canary, health, pausing, signals
from dispatcher.guardrails.policy import Guardrails, overlay
from dispatcher.providers import Provider
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState

log = logging.getLogger(__name__)

_LEASE = "dispatcher:guard-tick"
#: A tick lost with its worker frees the lease after this long.
LEASE_MS = 30_000


def effective(spec: dict[str, Any] | None) -> Guardrails:
    """The settings' thresholds with the campaign spec's changes."""
    return overlay(get_settings().guardrails, (spec or {}).get("guardrails"))


def tick(
    db: Database, client: Provider | None, redis_client: redis.Redis, now: datetime
) -> dict[int, list[str]]:
    """Judge the sending campaigns once; returns, by campaign, the batches a canary
    judged good released (to be handed to the send queue). ``client`` is for the
    signals that ask the provider (sender health); the outcome signals do not."""
    token = uuid.uuid4().hex
    released: dict[int, list[str]] = {}
    if redis_client.set(_LEASE, token, nx=True, px=LEASE_MS):  # else another's tick runs
        try:
            released = _tick(db, redis_client, now)
        finally:
            if redis_client.get(_LEASE) == token.encode():
                redis_client.delete(_LEASE)
    if client is not None:
        # Outside the lease: the provider may be slow to answer, and the poll keeps its
        # own pace (once per poll_interval per sender, across every worker).
        try:
            health.poll(db, client, redis_client, now)
        except Exception:
            log.exception("the senders' health could not be polled this time")
    return released


def _tick(db: Database, redis_client: redis.Redis, now: datetime) -> dict[int, list[str]]:
    with db.session() as session:
        rows = session.execute(
            select(Campaign.id, Campaign.spec, Campaign.canary, Campaign.guard_since,
                   Campaign.prepared_at)
            .where(Campaign.state == CampaignState.SENDING)
        ).all()  # fmt: skip
    released: dict[int, list[str]] = {}
    for campaign_id, spec, stored, guard_since, prepared_at in rows:
        try:
            rails = effective(spec)
            with db.session() as session:
                if stored and stored.get("verdict") is None:
                    # Judged once every person is written: the canary is whole, and the
                    # batches it releases are all there.
                    if prepared_at is not None:
                        ids = canary.step(session, campaign_id, stored, rails, now)
                        if ids:
                            released[campaign_id] = ids
                    continue
                if not rails.enabled:
                    continue
                since = now - rails.window
                if guard_since is not None:
                    since = max(since, aware(guard_since))
                signal = signals.judge_window(session, redis_client, campaign_id, rails, since)
                if signal is not None:
                    pausing.pause(session, campaign_id, signal, now)
        except Exception:
            log.exception("campaign %s: guardrails could not judge it this time", campaign_id)
    return released
