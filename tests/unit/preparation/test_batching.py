"""Batches tile the sender's level, whatever ``batch_size`` says."""

from __future__ import annotations

import random

import pytest

from dispatcher.preparation.batching import Batch, Writer, tiling


def _sizes(batch_size: int, level: int, groups: dict[str, int]) -> list[int]:
    """Batch sizes, in sending order, for people arriving round-robin over groups."""
    cut: list[Batch] = []
    writer = Writer(1, batch_size, 0, cut.extend, level=level)
    left = dict(groups)
    person = 0
    while left:
        for key in list(left):
            writer.add(key, {"content": key}, (f"p{person}", "+4790000000", [], person, "{}"))
            person += 1
            left[key] -= 1
            if not left[key]:
                del left[key]
    writer.close()
    assert sum(len(b.members) for b in cut) == sum(groups.values())
    return [len(b.members) for b in cut]


def _rate(sizes: list[int], level: int) -> float:
    """Messages a second when each request leaves as early as the sender's rule allows:
    evenly paced, and no 1-second window holding more than the level."""
    sent: list[tuple[int, int]] = []  # (microsecond, size): whole numbers, no rounding
    paced = 0
    for size in sizes:
        at = paced
        while sum(w for t, w in sent if t > at - 1_000_000) + size > level:
            at = min(t for t, _ in sent if t > at - 1_000_000) + 1_000_000
        sent.append((at, size))
        paced = at + size * 1_000_000 // level
    return sum(sizes[:-1]) * 1_000_000 / sent[-1][0]


@pytest.mark.parametrize(
    ("batch_size", "level", "size"),
    [(50, 80, 40), (80, 80, 80), (100, 80, 80), (30, 80, 20), (80, 1000, 50), (100, 1000, 100),
     (50, 900, 50), (80, 900, 75)],
)  # fmt: skip
def test_full_batches_divide_the_level(batch_size: int, level: int, size: int) -> None:
    assert tiling(batch_size, level) == size
    assert set(_sizes(batch_size, level, {"all": size * 7})) == {size}


@pytest.mark.parametrize(("batch_size", "level"), [(50, 80), (30, 80), (80, 1000), (100, 1000)])
def test_one_content_runs_at_the_level_in_any_order(batch_size: int, level: int) -> None:
    """Workers send a campaign's batches interleaved, not in the order they were cut."""
    sizes = _sizes(batch_size, level, {"all": level * 20})
    random.Random(1).shuffle(sizes)
    assert _rate(sizes, level) > 0.99 * level


def test_batches_of_the_configured_size_alone_would_not() -> None:
    """Why: a second request of 50 never fits a 1-second window of 80."""
    assert _rate([50] * 80, 80) < 0.64 * 80


def test_several_contents_stay_near_the_level() -> None:
    """Each group's remainder costs at most part of one request's time."""
    groups = {f"g{i}": 400 + 37 * i for i in range(6)}
    sizes = _sizes(50, 80, groups)
    assert max(sizes) == 40
    random.Random(2).shuffle(sizes)
    assert _rate(sizes, 80) > 0.95 * 80
