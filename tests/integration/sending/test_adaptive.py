"""Meta's rate-limit errors in delivery reports lower the sender's rate."""

from __future__ import annotations

import multiprocessing

import redis
from sqlalchemy import select

from dispatcher.db import Database, Message
from dispatcher.sending.throttle import Throttle
from dispatcher.tracking import apply as tracking
from dispatcher.tracking.ingest import ApplierSettings, _Applier, _Signals
from tests.integration.conftest import dlr, make_batch, store_body

SENDER = "+4790000000"  # make_batch's campaign source


def test_a_rate_limit_error_in_a_report_slows_its_sender_down(db: Database, redis_url: str) -> None:
    make_batch(db, ["+4791234567", "+4791234568"], link_ids=["m1", "m2"])
    with db.session() as session:
        store_body(session, "dlr", dlr("m1", 112403, description="(#130429) Rate limit hit"))
        store_body(session, "dlr", dlr("m2", 112003))
    settings = ApplierSettings(redis_url=redis_url, linger_seconds=0)
    applier = _Applier(db, settings, _Signals(), multiprocessing.Value("q", 0))
    applier.apply_all()
    # One message refused at 80 msg/s: 1/80 off, and the step (5 %); recovering since.
    factor = Throttle(redis.Redis.from_url(redis_url)).factor(SENDER)
    assert 1 - 0.05 - 1 / 80 <= factor < 0.96


def test_reports_without_rate_limit_errors_leave_the_rate_alone(
    db: Database, redis_url: str
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    with db.session() as session:
        store_body(session, "dlr", dlr("m1", 112403, description="(#131049) ecosystem"))
    settings = ApplierSettings(redis_url=redis_url, linger_seconds=0)
    applier = _Applier(db, settings, _Signals(), multiprocessing.Value("q", 0))
    applier.apply_all()
    assert Throttle(redis.Redis.from_url(redis_url)).factor(SENDER) == 1.0


def test_a_message_noted_twice_counts_once(db: Database) -> None:
    """Reports retried one by one after a failed set note their messages again."""
    make_batch(db, ["+4791234567", "+4791234568"], link_ids=["m1", "m2"])
    with db.session() as session:
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
        tracking.note_rate_limited(session, ids[:1])
        tracking.note_rate_limited(session, ids)
        assert tracking.rate_limited_senders(session) == {SENDER: tracking.Refused(2, 80)}
        assert tracking.rate_limited_senders(session) == {}  # told once
