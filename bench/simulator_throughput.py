"""How many messages per second the LINK simulator accepts and calls back on one core.

Starts the simulator (`dispatcher simulate`, level HIGH, pinned to CPU 0 when taskset
exists) with one gate pointing at an aiohttp receiver that answers 200; then, from this
process, CONCURRENCY connections post single-destination /messages at RATE msg/s
(0 = as fast as possible) for SECONDS, and waits until every DLR (sent, delivered,
read: three per message) has been delivered. Prints the accepted rate and the
end-to-end rate (load start to last callback).

    .venv/bin/python bench/simulator_throughput.py [SECONDS] [RATE] [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

USER, PASSWORD = "bench", "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_body(worker: int, number: int) -> dict[str, object]:
    return {
        "platformId": "BENCH",
        "platformPartnerId": "1",
        "priority": "NORMAL",
        "refId": f"w{worker}-{number}",
        "source": "+4790000000",
        "eventReportGates": ["bench"],
        "destinations": [f"+4791{worker:03d}{number:05d}"],
        "messages": [{"type": "text", "text": {"body": "hello"}}],
    }


async def load(base: str, seconds: float, rate: float, concurrency: int) -> tuple[int, float]:
    accepted = 0
    interval = concurrency / rate if rate else 0.0
    deadline = time.monotonic() + seconds
    auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker(number: int) -> None:
            nonlocal accepted
            sent, next_at = 0, time.monotonic()
            while time.monotonic() < deadline:
                if interval:
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                sent += 1
                async with http.post(
                    f"{base}/messages", json=request_body(number, sent), headers=auth
                ) as response:
                    await response.read()
                    accepted += response.status == 200

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return accepted, time.monotonic() - started


async def receiver(port: int) -> web.AppRunner:
    async def callback(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="{}", content_type="application/json")

    app = web.Application()
    app.router.add_post("/dlr", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 0
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    sim_port, receiver_port = free_port(), free_port()
    runner = await receiver(receiver_port)
    env = os.environ | {
        "SIMULATOR_USERNAME": USER,
        "SIMULATOR_PASSWORD": PASSWORD,
        "SIMULATOR_LEVEL": "HIGH",
        "SIMULATOR_ENFORCE_LEVEL": "false",
        "SIMULATOR_SEED": "1",
    }
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() else []
    command = [*pin, sys.executable, "-m", "dispatcher.interfaces.cli", "simulate",
               "--port", str(sim_port),
               "--gate", f"bench=http://127.0.0.1:{receiver_port}/dlr"]  # fmt: skip
    simulator = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{sim_port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            started = time.monotonic()
            accepted, elapsed = await load(base, seconds, rate, concurrency)
            while True:
                async with http.get(f"{base}/_simulator/stats") as response:
                    stats = await response.json()
                if stats["callbacks"]["pending"] == 0:
                    break
                await asyncio.sleep(0.05)
            total = time.monotonic() - started
    finally:
        simulator.terminate()
        simulator.wait()
        await runner.cleanup()
    callbacks = stats["callbacks"]
    print(f"accepted {accepted} messages in {elapsed:.2f} s = {accepted / elapsed:.0f} msg/s")
    print(
        f"callbacks delivered {callbacks['delivered']} (retried {callbacks['retried']}, "
        f"dropped {callbacks['dropped']}), "
        f"last one {total - elapsed:.2f} s after the load ended"
    )
    print(f"end to end: {accepted / total:.0f} msg/s with 3 DLRs each")


if __name__ == "__main__":
    asyncio.run(main())
