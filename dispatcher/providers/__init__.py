"""The messaging providers, each in a folder of its own, behind one ``Provider``.

The stages import this package only (``base``'s vocabulary is re-exported here), never
a provider's folder; a provider is a folder plus its lines below:

* ``provider_from_settings`` builds the providers the settings configure, as one
  ``Providers`` that sends each campaign through the one its spec names (workers, CLI);
* ``WEBHOOKS`` lists the webhook paths the app serves and the kind of callback each
  takes (the kind is stored with every body); ``parse_callback`` reads a stored body by
  its kind.

A provider's client (httpx, httptools) loads only when one is built, its callback models
only when a body is read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ConfigurationError
from dispatcher.providers.base import (
    MAX_ID_CHARS,
    MAX_REF_CHARS,
    Answer,
    Callback,
    EchoReport,
    IncomingReport,
    InvalidReport,
    Level,
    Pricing,
    Priority,
    Provider,
    ReplyContext,
    Request,
    SenderEvent,
    SenderInfo,
    SliceSender,
    StatusReport,
    TemplateInfo,
    UploadedMedia,
)

# Meta's webhook signature (stdlib only): the webhook app checks posts with it.
from dispatcher.providers.meta import signature as meta_signature

if TYPE_CHECKING:
    from dispatcher.campaigns.spec import CampaignSpec, SenderSpec
    from dispatcher.settings import Settings

__all__ = [
    "MAX_ID_CHARS",
    "MAX_REF_CHARS",
    "PROVIDER_NAMES",
    "WEBHOOKS",
    "Answer",
    "Callback",
    "EchoReport",
    "IncomingReport",
    "InvalidReport",
    "Level",
    "Pricing",
    "Priority",
    "Provider",
    "Providers",
    "ReplyContext",
    "Request",
    "SenderEvent",
    "SenderInfo",
    "SliceSender",
    "StatusReport",
    "TemplateInfo",
    "UploadedMedia",
    "answering",
    "load_parsers",
    "meta_signature",
    "offline_provider",
    "parse_callback",
    "provider_from_settings",
    "serving",
]

#: A spec's ``sender.provider`` as users know it.
PROVIDER_NAMES = {"link": "LINK", "meta": "Meta"}

#: Webhook path -> the kind of callback it takes (``tracking.intake.Kind``).
WEBHOOKS: dict[str, str] = {
    "/webhooks/link/dlr": "dlr",
    "/webhooks/link/mo": "mo",
    "/webhooks/meta": "meta",
}


def provider_from_settings(
    settings: Settings, *, timeout_seconds: float | None = None
) -> Providers:
    """The providers the settings configure, one picked per campaign (``Providers``):
    LINK (``LINK_*``) and Meta's Cloud API (``META_*``). In the embedded default both
    are the built-in simulator. ``timeout_seconds`` overrides each one's own timeout."""
    link: Provider | None = None
    meta: Provider | None = None
    if settings.link_base_url is not None:
        from dispatcher.providers.link.client import LinkClient, LinkCredentials

        link = LinkClient(
            LinkCredentials(
                base_url=settings.link_base_url,
                username=settings.link_username or "",
                password=settings.link_password.get_secret_value()
                if settings.link_password
                else "",
                platform_id=settings.link_platform_id or "",
                platform_partner_id=settings.link_platform_partner_id or "",
            ),
            timeout_seconds=settings.link_timeout_seconds
            if timeout_seconds is None
            else timeout_seconds,
        )
    if settings.meta_base_url is not None:
        from dispatcher.providers.meta.client import MetaClient, MetaCredentials

        token = settings.meta_access_token
        meta = MetaClient(
            MetaCredentials(
                base_url=settings.meta_base_url,
                access_token=token.get_secret_value() if token else "",
                api_version=settings.meta_api_version,
                waba_id=settings.meta_waba_id,
            ),
            timeout_seconds=settings.meta_timeout_seconds
            if timeout_seconds is None
            else timeout_seconds,
        )
    if link is None and meta is None:
        raise ConfigurationError("set LINK_BASE_URL or META_BASE_URL")
    return Providers(link=link, meta=meta)


def offline_provider() -> Provider:
    """A provider for work that calls none (dry runs): nothing answers it, so a call
    fails as unreachable rather than reaching anyone."""
    from dispatcher.providers.link.client import LinkClient, LinkCredentials

    return LinkClient(LinkCredentials("http://127.0.0.1:9", "", "", "", ""))


def serving(client: Provider, sender: SenderSpec) -> Provider:
    """The provider that serves this sender: the one its spec names when ``client`` holds
    several (``Providers``), else ``client`` itself."""
    return client.pick(sender.provider) if isinstance(client, Providers) else client


def answering(client: Provider, request: Request) -> Provider:
    """The provider a request goes out through (its name, in what users read)."""
    return client.pick(request.provider) if isinstance(client, Providers) else client


class Providers:
    """Every configured provider as one ``Provider``: a campaign's requests go to the one
    its spec names (``sender.provider``), and each request goes out through the
    provider that built it. Stages that ask about a sender (media, checks) take the
    right one first with ``serving``."""

    def __init__(self, *, link: Provider | None, meta: Provider | None) -> None:
        self._by_name = {name: p for name, p in (("link", link), ("meta", meta)) if p is not None}

    def pick(self, name: str) -> Provider:
        provider = self._by_name.get(name)
        if provider is None:
            variable = "META_BASE_URL" if name == "meta" else "LINK_BASE_URL"
            raise ConfigurationError(
                f"this campaign sends through {PROVIDER_NAMES.get(name, name)}, which is not "
                f"configured here: set {variable}"
            )
        return provider

    @property
    def name(self) -> str:
        return " and ".join(p.name for p in self._by_name.values())

    @property
    def account(self) -> str:
        return "+".join(p.account for p in self._by_name.values())

    def request(
        self,
        spec: CampaignSpec,
        batch_id: str,
        destinations: list[str],
        messages: list[dict[str, Any]],
        *,
        valid_until: datetime | None,
        event_report_gate: str | None,
        campaign_id: int,
    ) -> Request:
        return self.pick(spec.sender.provider).request(
            spec, batch_id, destinations, messages, valid_until=valid_until,
            event_report_gate=event_report_gate, campaign_id=campaign_id,
        )  # fmt: skip

    def send(self, request: Request) -> Answer:
        return self.pick(request.provider).send(request)

    def concurrent(self, max_connections: int = 200) -> SliceSender:
        return _RoutedSender(self, max_connections)

    def upload_media(
        self, *, source: str, content_type: str, filename: str, data: bytes
    ) -> UploadedMedia:
        raise TypeError("ask the sender's own provider (providers.serving)")

    def sender_info(self, source: str) -> SenderInfo:
        raise TypeError("ask the sender's own provider (providers.serving)")

    def templates(self, source: str) -> list[TemplateInfo]:
        raise TypeError("ask the sender's own provider (providers.serving)")

    def simulator_instance(self) -> str | None:
        """The simulator answering for the first provider configured (in the embedded
        default one simulator serves both)."""
        return next(iter(self._by_name.values())).simulator_instance()

    def close(self) -> None:
        for provider in self._by_name.values():
            provider.close()


class _RoutedSender:
    """One ``SliceSender`` per provider, opened when its first request comes."""

    def __init__(self, providers: Providers, max_connections: int) -> None:
        self._providers = providers
        self._max_connections = max_connections
        self._senders: dict[str, SliceSender] = {}

    async def send(self, request: Request) -> Answer:
        sender = self._senders.get(request.provider)
        if sender is None:
            provider = self._providers.pick(request.provider)
            sender = self._senders[request.provider] = provider.concurrent(self._max_connections)
        return await sender.send(request)

    async def aclose(self) -> None:
        for sender in self._senders.values():
            await sender.aclose()
        self._senders.clear()


def parse_callback(kind: str, body: bytes) -> Callback:
    """What a webhook body of this kind holds; ``InvalidReport`` says why it holds
    nothing readable."""
    parse = _parsers().get(kind)
    if parse is None:
        raise InvalidReport(f"no provider sends {kind!r} callbacks")
    return parse(body)


def load_parsers() -> None:
    """Import the callback parsers now: the first callback would otherwise import them
    on the server's loop (most of a second on a busy machine, every caller waiting)."""
    _parsers()


@cache
def _parsers() -> dict[str, Callable[[bytes], Callback]]:
    from dispatcher.providers.link import callbacks as link
    from dispatcher.providers.meta import callbacks as meta

    return {"dlr": link.read_status, "mo": link.read_incoming, "meta": meta.read_webhook}
