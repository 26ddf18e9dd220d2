"""The CPU each kind of task costs the workers, summed in Redis over every worker
process and host.

A worker's process CPU mixes the send path with a campaign's preparation and the
periodic tasks that share the pool; this splits it by task, so the send path's own cost
per request can be read while it runs (Prometheus
``dispatcher_worker_task_cpu_seconds_total``; ``bench/throughput.py``). Counted from the
task's own thread (user + system), from the start of the task to its end: waits cost
nothing, the event loop's work for the task's requests counts.
"""

from __future__ import annotations

import time

import redis

#: Hash of task name -> CPU seconds, and of task name -> tasks run.
CPU_KEY = "dispatcher:task_cpu_seconds"
RUNS_KEY = "dispatcher:task_runs"


def started() -> float:
    """The running thread's CPU clock, to pass to ``record`` when the task ends."""
    return time.thread_time()


def record(client: redis.Redis, task: str, since: float) -> None:
    """Add the CPU this thread spent since ``since`` to the task's totals (one round
    trip). Raises ``redis.RedisError``."""
    spent = time.thread_time() - since
    pipe = client.pipeline(transaction=False)
    pipe.hincrbyfloat(CPU_KEY, task, spent)
    pipe.hincrby(RUNS_KEY, task, 1)
    pipe.execute()


def totals(client: redis.Redis) -> dict[str, tuple[float, int]]:
    """Each task's CPU seconds and runs so far. Raises ``redis.RedisError``."""
    cpu: dict[bytes, bytes] = client.hgetall(CPU_KEY)  # type: ignore[assignment]
    runs: dict[bytes, bytes] = client.hgetall(RUNS_KEY)  # type: ignore[assignment]
    return {
        name.decode(): (float(seconds), int(runs.get(name, b"0")))
        for name, seconds in sorted(cpu.items())
    }
