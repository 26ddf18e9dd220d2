"""A faithful stand-in for LINK Mobility's WhatsApp Message API and Meta's WhatsApp Cloud API.

Users rehearse campaigns against it and tests and benchmarks send real HTTP to it::

    from dispatcher.simulator import SimulatorConfig, create_app
    app = create_app(SimulatorConfig(gates={"gate1": "http://127.0.0.1:8001/dlr"}))
"""

from dispatcher.simulator.app import create_app
from dispatcher.simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_app"]
