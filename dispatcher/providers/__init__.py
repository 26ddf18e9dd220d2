"""The messaging providers, each in a folder of its own, behind one ``Provider``.

The stages import this package only (``base``'s vocabulary is re-exported here), never
a provider's folder; a second provider is a new folder plus its lines below:

* ``provider_from_settings`` builds the provider the settings name (workers, CLI);
* ``WEBHOOKS`` lists the webhook paths the app serves and the kind of callback each
  takes (the kind is stored with every body); ``parse_callback`` reads a stored body by
  its kind.

A provider's client (httpx, httptools) loads only when one is built, its callback models
only when a body is read.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from dispatcher.errors import ConfigurationError
from dispatcher.providers.base import (
    MAX_ID_CHARS,
    Answer,
    Callback,
    IncomingReport,
    InvalidReport,
    Level,
    Pricing,
    Priority,
    Provider,
    ReplyContext,
    Request,
    SenderInfo,
    SliceSender,
    StatusReport,
    TemplateInfo,
    UploadedMedia,
)

if TYPE_CHECKING:
    from dispatcher.settings import Settings

__all__ = [
    "MAX_ID_CHARS",
    "WEBHOOKS",
    "Answer",
    "Callback",
    "IncomingReport",
    "InvalidReport",
    "Level",
    "Pricing",
    "Priority",
    "Provider",
    "ReplyContext",
    "Request",
    "SenderInfo",
    "SliceSender",
    "StatusReport",
    "TemplateInfo",
    "UploadedMedia",
    "offline_provider",
    "parse_callback",
    "provider_from_settings",
]

#: Webhook path -> the kind of callback it takes (``tracking.intake.Kind``).
WEBHOOKS: dict[str, str] = {"/webhooks/link/dlr": "dlr", "/webhooks/link/mo": "mo"}


def provider_from_settings(settings: Settings, *, timeout_seconds: float | None = None) -> Provider:
    """The provider the settings configure: LINK (``LINK_*``), the only one so far.
    ``timeout_seconds`` overrides ``LINK_TIMEOUT_SECONDS``."""
    from dispatcher.providers.link.client import LinkClient, LinkCredentials

    if settings.link_base_url is None:
        raise ConfigurationError("set LINK_BASE_URL")
    credentials = LinkCredentials(
        base_url=settings.link_base_url,
        username=settings.link_username or "",
        password=settings.link_password.get_secret_value() if settings.link_password else "",
        platform_id=settings.link_platform_id or "",
        platform_partner_id=settings.link_platform_partner_id or "",
    )
    timeout = settings.link_timeout_seconds if timeout_seconds is None else timeout_seconds
    return LinkClient(credentials, timeout_seconds=timeout)


def offline_provider() -> Provider:
    """A provider for work that calls none (dry runs): nothing answers it, so a call
    fails as unreachable rather than reaching anyone."""
    from dispatcher.providers.link.client import LinkClient, LinkCredentials

    return LinkClient(LinkCredentials("http://127.0.0.1:9", "", "", "", ""))


def parse_callback(kind: str, body: bytes) -> Callback:
    """What a webhook body of this kind holds; ``InvalidReport`` says why it holds
    nothing readable."""
    parse = _parsers().get(kind)
    if parse is None:
        raise InvalidReport(f"no provider sends {kind!r} callbacks")
    return parse(body)


@cache
def _parsers() -> dict[str, Callable[[bytes], Callback]]:
    from dispatcher.providers.link import callbacks as link

    return {"dlr": link.read_status, "mo": link.read_incoming}
