"""The simulator's side that plays Meta's WhatsApp Cloud API (seeds 000-003).

``create_app`` serves it next to the LINK API: the same people, fates, books and callback
dispatcher, with Meta's paths, answers, errors and signed status webhooks.
"""

from dispatcher.simulator.meta.gateway import MetaSimulator
from dispatcher.simulator.meta.routes import meta_routes

__all__ = ["MetaSimulator", "meta_routes"]
