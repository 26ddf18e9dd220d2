"""``python -m dispatcher.simulator [--host H] [--port P]``; settings come from SIMULATOR_* env."""

from __future__ import annotations

import argparse

import uvicorn

from dispatcher.simulator import SimulatorConfig, create_app


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Simulated LINK WhatsApp Message API and Meta WhatsApp Cloud API"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    # No access log: request paths of the phone number API contain phone numbers.
    uvicorn.run(
        create_app(SimulatorConfig()),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=3,  # requests in flight cannot hold a stop for long
    )


if __name__ == "__main__":
    main()
