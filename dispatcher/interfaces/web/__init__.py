"""The internal listener's web side: the REST API (``/api``), the console
(``/console``), metrics and campaign status, all behind API keys (``auth``)."""
