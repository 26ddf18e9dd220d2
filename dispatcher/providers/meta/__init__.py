"""Meta's WhatsApp Cloud API as a ``Provider`` (seeds 000-003 and Meta's public reference):
the client (``client``: one person a request, bearer token), its wire models and the
Graph error codes (``models``, ``codes``), the webhook bodies read into reports
(``callbacks``) and their signature (``signature``).

Nothing is imported here: the client pulls in httpx and httptools, which a command that
only reads webhooks or the database does not need.
"""
