from __future__ import annotations

import itertools
import multiprocessing
import random
import time

import pytest
import redis

from dispatcher.sending.throttle import Grant, Throttle

LEVEL = 50
SENDER = "+4790000000"


def hammer(url: str, seed: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One 'worker': acquire random weights as fast as the limiter allows."""
    throttle = Throttle(redis.Redis.from_url(url))
    rng = random.Random(seed)
    grants = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        weight = rng.randint(1, 8)
        grant = throttle.acquire(SENDER, weight, LEVEL)
        grants.append((grant.at_seconds, weight))
    out.put(grants)


def busiest_window(grants: list[tuple[float, int]], window: float = 1.0) -> int:
    """The largest total weight in any window (t - window, t]."""
    grants.sort()
    best, start, total = 0, 0, 0
    for at, weight in grants:
        total += weight
        while grants[start][0] <= at - window:
            total -= grants[start][1]
            start += 1
        best = max(best, total)
    return best


def test_the_limiter_is_shared_between_processes_and_no_second_exceeds_the_level(
    redis_url: str,
) -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    seconds = 3.0
    workers = [context.Process(target=hammer, args=(redis_url, s, seconds, out)) for s in (1, 2)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    assert all(results), "both processes were granted capacity"
    grants = [g for result in results for g in result]
    assert busiest_window(list(grants)) <= LEVEL
    span = max(at for at, _ in grants) - min(at for at, _ in grants)
    sent = sum(weight for _, weight in grants)
    # Together they run at the level, not at twice it and not far below it.
    assert sent / span >= 0.85 * LEVEL


def test_a_request_larger_than_the_level_is_refused_up_front(redis_url: str) -> None:
    throttle = Throttle(redis.Redis.from_url(redis_url))
    with pytest.raises(ValueError, match="exceeds the level"):
        throttle.acquire(SENDER, LEVEL + 1, LEVEL)


def granted_rate(throttle: Throttle, seconds: float, weight: int = 1) -> tuple[float, int]:
    """(messages per second, busiest 1-s window) while one caller hammers the limiter."""
    grants: list[tuple[float, int]] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        grants.append((throttle.acquire(SENDER, weight, LEVEL).at_seconds, weight))
    span = max(at for at, _ in grants) - min(at for at, _ in grants)
    return sum(w for _, w in grants) / span, busiest_window(list(grants))


def test_a_rate_limit_signal_cuts_the_rate_by_the_share_refused_then_it_recovers(
    redis_url: str,
) -> None:
    throttle = Throttle(redis.Redis.from_url(redis_url), recovery_per_second=0.25)
    assert throttle.factor(SENDER) == 1.0
    # 20 of a second's 50 refused: 40 % off, and the step (5 %)
    assert throttle.penalise(SENDER, 20, LEVEL) == pytest.approx(0.55, abs=0.01)
    # Another worker's share of the same episode: the counts add up (22: 44 % + 5 %),
    # taken from the rate the episode began with, not from the rate already cut.
    assert throttle.penalise(SENDER, 2, LEVEL) == pytest.approx(0.51, abs=0.01)
    # More of it: an episode never cuts more than half.
    assert throttle.penalise(SENDER, 10, LEVEL) == pytest.approx(0.5, abs=0.01)
    rate, busiest = granted_rate(throttle, 0.8)
    assert busiest <= LEVEL * 0.75  # half the level, recovering at 25 % a second
    assert rate <= LEVEL * 0.75
    time.sleep(2.2)  # 0.5 + 3 s x 0.25: whole again
    assert throttle.factor(SENDER) == 1.0
    rate, busiest = granted_rate(throttle, 1.5)
    assert busiest <= LEVEL
    assert rate >= LEVEL * 0.85


def test_the_cut_is_the_share_refused_and_a_step_at_least(redis_url: str) -> None:
    throttle = Throttle(redis.Redis.from_url(redis_url), recovery_per_second=0)
    # A second that carried 1,007 at 1,000 msg/s: 0.7 % refused, 5.7 % off.
    assert throttle.penalise("+4790000001", 7, 1000) == pytest.approx(0.943)
    assert throttle.penalise("+4790000002", 1, 1000) == pytest.approx(0.949)
    # Nearly all refused (a level far above the account's, or a gateway's 429 for a
    # whole request): half, as much as one episode cuts.
    assert throttle.penalise("+4790000003", 45, 50) == pytest.approx(0.5)
    assert throttle.factor("+4790000004") == 1.0  # each sender its own


def test_an_episode_outlives_its_own_recovery_until_the_hold_ends(redis_url: str) -> None:
    """Recovery fast enough to be whole within the hold: the episode's count is still
    kept, so a late share of it adds up instead of starting a fresh cut."""
    throttle = Throttle(redis.Redis.from_url(redis_url), recovery_per_second=0.25)
    assert throttle.penalise(SENDER, 1, LEVEL) == pytest.approx(0.93, abs=0.01)
    time.sleep(1.2)  # whole again (0.93 + 0.3), the hold (5 s) not over
    assert throttle.factor(SENDER) == 1.0
    # 1 + 9 refused: 25 % off the rate the episode began with (1.0)
    assert throttle.penalise(SENDER, 9, LEVEL) == pytest.approx(0.75, abs=0.01)


def test_repeated_episodes_cut_again_but_never_below_the_floor(redis_url: str) -> None:
    throttle = Throttle(redis.Redis.from_url(redis_url), hold_seconds=0.0, recovery_per_second=0)
    factors = [throttle.penalise(SENDER, 10, LEVEL) for _ in range(10)]
    expected = [max(0.1, 0.75**n) for n in range(1, 11)]  # 20 % + 5 % each time
    assert factors == pytest.approx(expected)
    assert factors[-2:] == pytest.approx([0.1, 0.1])
    # A request is never split: a batch larger than the lowered rate still goes, alone.
    grant = throttle.acquire(SENDER, 20, LEVEL)
    assert grant.waited_seconds < 1


def test_grants_come_evenly_paced_not_a_window_at_once(redis_url: str) -> None:
    """Twenty reservations made at once: each starts its weight's share of the window
    after the one before, so the first second holds half a level's worth at each end
    of it, never the whole level in a burst followed by nothing."""
    throttle = Throttle(redis.Redis.from_url(redis_url), margin_seconds=0.0)
    grants = [throttle.reserve(SENDER, 5, LEVEL) for _ in range(20)]
    gaps = [b.at_seconds - a.at_seconds for a, b in itertools.pairwise(grants)]
    assert all(gap == pytest.approx(5 / LEVEL, abs=1e-3) for gap in gaps)
    assert grants[0].spacing == pytest.approx(1 / LEVEL)
    in_first_half = sum(5 for g in grants if g.at_seconds - grants[0].at_seconds < 0.5)
    assert in_first_half == LEVEL // 2


def busiest_spread_window(grants: list[tuple[Grant, list[int]]]) -> int:
    """``busiest_window`` over each piece of each grant at the moment it leaves (spread
    as ``fanout.dues``), in whole microseconds as the limiter keeps them."""
    moments: list[tuple[float, int]] = []
    for grant, pieces in grants:
        before = 0
        for piece in pieces:
            moments.append((round((grant.at_seconds + before * grant.spacing) * 1e6), piece))
            before += piece
    return busiest_window(moments, window=1_000_000)


def test_a_small_grant_among_spread_slices_costs_its_own_share_not_a_slice(
    redis_url: str,
) -> None:
    """Slices of ten one-message requests leave spread over their share of the window;
    a single request among them (one that missed its moment and came back) delays the
    stream by its own share. Counted all at once, it would cost a whole slice, once a
    window, for as long as the stream ran back to back."""
    throttle = Throttle(redis.Redis.from_url(redis_url), margin_seconds=0.0)
    plan = [[1] * 10] * 12 + [[1]] + [[1] * 10] * 12
    grants = [(throttle.reserve(SENDER, len(p), LEVEL, p), p) for p in plan]
    starts = [grant.at_seconds for grant, _ in grants]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[12] == pytest.approx(1 / LEVEL, abs=1e-3)  # after the single request
    assert all(gap == pytest.approx(10 / LEVEL, abs=1e-3) for gap in gaps[13:])
    assert busiest_spread_window(grants) <= LEVEL


def test_spread_grants_of_any_shape_never_put_more_than_the_level_in_a_window(
    redis_url: str,
) -> None:
    throttle = Throttle(redis.Redis.from_url(redis_url), margin_seconds=0.0)
    rng = random.Random(5)
    grants = []
    for _ in range(50):  # about 9 s of slots: within how far ahead one may reserve
        pieces = [rng.randint(1, 6) for _ in range(rng.randint(1, 4))]
        grants.append((throttle.reserve(SENDER, sum(pieces), LEVEL, pieces), pieces))
    assert busiest_spread_window(grants) <= LEVEL
    span = grants[-1][0].at_seconds - grants[0][0].at_seconds
    sent = sum(sum(p) for _, p in grants[:-1])
    assert sent / span > 0.9 * LEVEL  # and near the level, back to back


def test_pieces_must_add_up_to_the_weight(redis_url: str) -> None:
    throttle = Throttle(redis.Redis.from_url(redis_url))
    with pytest.raises(ValueError, match="add up"):
        throttle.reserve(SENDER, 5, LEVEL, [2, 2])


def test_spread_grants_keep_to_a_lowered_rate_too(redis_url: str) -> None:
    """After a rate-limit signal the window check, not the pacing alone, holds the
    slices to the lowered level (the pacing of grants made before it is the old one)."""
    throttle = Throttle(redis.Redis.from_url(redis_url), margin_seconds=0.0, recovery_per_second=0)
    grants = [(throttle.reserve(SENDER, 10, LEVEL, [1] * 10), [1] * 10) for _ in range(10)]
    assert throttle.penalise(SENDER, 20, LEVEL) == pytest.approx(0.55)
    grants += [(throttle.reserve(SENDER, 10, LEVEL, [1] * 10), [1] * 10) for _ in range(10)]
    later = grants[10:]
    assert busiest_spread_window(later) <= int(LEVEL * 0.55)
    assert busiest_spread_window(grants) <= LEVEL
