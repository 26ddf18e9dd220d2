"""A task takes about a second of the level, so every worker shares a campaign."""

from __future__ import annotations

from dispatcher.sending.fanout import CHUNK_BATCHES, chunk_size, chunks


def test_batched_campaigns_spread_over_the_workers() -> None:
    assert chunk_size(1000, 80) == 13  # not 100 batches (8,000 people) for one worker
    assert chunk_size(80, 50) == 2
    assert chunk_size(80, 80) == 1


def test_one_person_a_request_takes_at_most_the_chunk() -> None:
    assert chunk_size(1000, 1) == CHUNK_BATCHES
    assert chunk_size(80, 1) == 80


def test_chunks_cover_every_batch_once() -> None:
    ids = [f"b{i}" for i in range(27)]
    parts = list(chunks(ids, 13))
    assert [len(p) for p in parts] == [13, 13, 1]
    assert [b for part in parts for b in part] == ids
