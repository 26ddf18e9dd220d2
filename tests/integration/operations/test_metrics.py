"""``GET /metrics`` of the internal listener over real HTTP, after a real (small) send."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from dispatcher.db import Database, Message
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.web.app import create_internal_app
from dispatcher.masking import mask
from dispatcher.operations import task_cpu
from dispatcher.sending import fanout
from dispatcher.sending.batch import SendContext
from tests.integration.conftest import key_headers, personalised

SOURCE = "+4790000000"


@pytest.fixture()
def scrape(db: Database, redis_url: str) -> Iterator[httpx.Client]:
    with (
        ServerThread(create_internal_app(db, redis_url=redis_url)) as server,
        httpx.Client(base_url=server.url, timeout=10, headers=key_headers(db)) as client,
    ):
        yield client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_show_messages_failures_rates_limiter_and_queues_without_numbers(
    ctx: SendContext,
    sender: fanout.Fanout,
    scrape: httpx.Client,
    redis_url: str,
    tmp_path: Path,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 12)
    fanout.send_many(ctx, sender, batch_ids, "task-1")
    now = datetime.now(UTC)
    with ctx.db.session() as session:
        campaign_id = session.scalar(select(func.max(Message.campaign_id)))
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
        session.execute(  # three failed on WhatsApp's side, two of them 131049
            update(Message).where(Message.id.in_(ids[:2]))
            .values(status="failed", result_code=112403, whatsapp_error_code=131049)
        )  # fmt: skip
        session.execute(
            update(Message).where(Message.id == ids[2])
            .values(status="failed", result_code=112404, whatsapp_error_code=None)
        )  # fmt: skip
        session.execute(  # four reported sent, 2 and 4 seconds after submission
            update(Message).where(Message.id.in_(ids[3:5]))
            .values(status="sent", submitted_at=now - timedelta(seconds=2), sent_at=now)
        )  # fmt: skip
        session.execute(
            update(Message).where(Message.id.in_(ids[5:7]))
            .values(status="sent", submitted_at=now - timedelta(seconds=4), sent_at=now)
        )  # fmt: skip
    broker = redis.Redis.from_url(redis_url)
    broker.rpush("send", b"a", b"b")
    broker.rpush("send\x06\x163", b"c")  # a lower-priority step of the same queue
    for _ in range(2):  # two send tasks of an eighth of a second of CPU each
        task_cpu.record(broker, "send_batches", task_cpu.started() - 0.125)
    ctx.throttle.penalise(SOURCE, 36, 80)  # 36 of 80 refused: 45 % off, and the step
    for _ in range(3):
        ctx.throttle.reserve(SOURCE, 80, 80)  # three seconds' worth handed out ahead

    answer = scrape.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert SOURCE not in answer.text and "+479" + "1000001" not in answer.text
    got = samples(answer.text)
    sender_label = mask(SOURCE)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    cid = str(campaign_id)
    assert value("dispatcher_messages", campaign_id=cid, sender=sender_label, status="failed") == 3
    assert value("dispatcher_messages", campaign_id=cid, sender=sender_label, status="sent") == 4
    submitted = value(
        "dispatcher_messages", campaign_id=cid, sender=sender_label, status="submitted"
    )
    assert submitted == 5
    assert value("dispatcher_message_failures", campaign_id=cid, sender=sender_label,
                 result_code="112403", whatsapp_code="131049") == 2  # fmt: skip
    assert value("dispatcher_message_failures", campaign_id=cid, sender=sender_label,
                 result_code="112404", whatsapp_code="") == 1  # fmt: skip
    assert value("dispatcher_dlr_lag_seconds", campaign_id=cid, sender=sender_label,
                 stat="mean") == pytest.approx(3.0, abs=0.01)  # fmt: skip
    assert value("dispatcher_dlr_lag_seconds", campaign_id=cid, sender=sender_label,
                 stat="max") == pytest.approx(4.0, abs=0.01)  # fmt: skip
    # all 12 submitted within the last 10 seconds
    assert value("dispatcher_send_rate_per_second", sender=sender_label) == pytest.approx(1.2)
    assert value("dispatcher_sender_rate_limit_per_second", sender=sender_label) == (
        pytest.approx(40, abs=1)
    )
    assert 1.5 < value("dispatcher_limiter_wait_seconds", sender=sender_label) <= 6.5
    assert value("dispatcher_queue_length", queue="send") == 3
    spent = value("dispatcher_worker_task_cpu_seconds_total", task="send_batches")
    assert spent == pytest.approx(0.25, abs=0.01)
    assert value("dispatcher_worker_tasks_total", task="send_batches") == 2
    assert value("dispatcher_queue_length", queue="prepare") == 0
    assert value("dispatcher_database_up") == 1 and value("dispatcher_redis_up") == 1
    info = [k for k in got if k[0] == "dispatcher_campaign_info"]
    assert dict(info[0][1])["state"] == "sending"
