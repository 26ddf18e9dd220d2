"""Settings of the simulated LINK and Meta Cloud APIs (env prefix ``SIMULATOR_``)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.simulator.templates import default_templates

Level = Literal["STANDARD", "HIGH"]
HealthStatus = Literal["AVAILABLE", "LIMITED", "BLOCKED"]
QualityRating = Literal["GREEN", "YELLOW", "RED", "NA"]
MessagingTier = Literal["TIER_250", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"]

# Seed 'Phone number information API': STANDARD = 80 messages per second, HIGH = 1000.
LEVEL_RATES: dict[str, int] = {"STANDARD": 80, "HIGH": 1000}


class SimulatorConfig(BaseSettings):
    """Everything a rehearsal or a test may want to vary, readable from the environment.

    Dict fields take JSON in the environment, e.g.
    ``SIMULATOR_GATES='{"gate1": "http://127.0.0.1:8001/dlr"}'``.
    """

    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", extra="ignore")

    username: str = "demo"
    password: str = Field(default="demo", repr=False)
    platform_id: str | None = None
    platform_partner_id: str | None = None
    gates: dict[str, str] = Field(default_factory=dict)
    level: Level = "STANDARD"
    levels: dict[str, Level] = Field(default_factory=dict)
    messaging_tier: MessagingTier = "TIER_UNLIMITED"
    health_status: HealthStatus = "AVAILABLE"
    quality_rating: QualityRating = "GREEN"
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # WhatsApp error codes the ``failure_rate`` failures are drawn from (reported as
    # 112403 "(#code) ..."); empty: a mix of undeliverable, ecosystem and LINK's own.
    failure_codes: list[int] = Field(default_factory=list)
    read_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    dlr_delay_ms: int = Field(default=20, ge=0)
    enforce_level: bool = True
    callback_max_attempts: int = Field(default=20, ge=1)
    callback_backoff_ms: int = Field(default=100, ge=0)
    callback_concurrency: int = Field(default=32, ge=1)
    seed: int | None = None
    response_delay_ms: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Faults after acceptance (the messages are queued, so LINK will report them): the
    # answer comes ``hang_ms`` late (past a client's read timeout), or the connection is
    # dropped with no answer at all.
    hang_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    hang_ms: int = Field(default=5000, ge=0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Keep every accepted request body for GET /_simulator/requests, and every callback a
    # receiver took (2xx) for GET /_simulator/callbacks (tests, rehearsals).
    record_requests: bool = False
    # Scripted fates: destination -> outcome of its 1st, 2nd, ... send. 0 = delivered and
    # read; -1 = accepted but never reported; any other number = that WhatsApp error code,
    # reported as 112403 "(#code) ...". Sends beyond the list are delivered.
    scripted: dict[str, list[int]] = Field(default_factory=dict)
    # Scripted report codes: destination -> LINK resultCode reported for its 1st, 2nd, ...
    # send, whatever the code (one the seed's table does not list too); 0 = its fate as
    # ``scripted`` or drawn. Counts sends with ``scripted``.
    scripted_results: dict[str, list[int]] = Field(default_factory=dict)
    # Media uploads answered with ``upload_failure_code`` instead of a media id: the
    # first ``upload_failures`` of them (seed 'Upload Media': 112503 "Temporary network
    # errors, request can be reissued later", or 112500).
    upload_failures: int = Field(default=0, ge=0)
    upload_failure_code: Literal[112500, 112503] = 112503

    # The sender's message templates in Meta's format (List Templates), replacing the
    # default list (``templates.default_templates``): a template message that names
    # none of them, or gives other parameter counts, fails as Meta fails it.
    templates: list[dict[str, Any]] = Field(default_factory=default_templates)
    # People (destinations) whose 24-hour customer care window is open; when set, a
    # message other than a template to anyone else fails with 131047. Unset: not judged
    # (the simulator does not see what people write to the business).
    open_care_windows: list[str] | None = None

    # -- Meta's WhatsApp Cloud API (the same app serves it under ``/{version}/...``) --------
    # The bearer token senders must present, and the app secret status webhooks are signed
    # with (``X-Hub-Signature-256``, Meta's webhook reference).
    meta_access_token: str = Field(default="demo-token", repr=False)
    meta_app_secret: str = Field(default="demo-secret", repr=False)
    # Where status webhooks go (the URL registered in the app dashboard); None: none sent.
    meta_webhook_url: str | None = None
    # The business phone numbers: phone number id -> display number (E.164). Their levels
    # come from ``level``/``levels`` keyed by the display number.
    meta_phone_numbers: dict[str, str] = Field(
        default_factory=lambda: {"106540352242922": "+4790000000"}
    )
    meta_waba_id: str = "102290129340398"
    # Phone number ids also in use in the WhatsApp Business app ("coexistence"): Meta's
    # reference fixes their throughput at 20 messages per second, whatever the level.
    meta_biz_app_numbers: list[str] = Field(default_factory=list)
    # Meta's reference: a phone number's ``name_status`` (display name review).
    meta_name_status: str = "APPROVED"
    # Pair rate limit (Meta's reference: about one message every 6 seconds to one user,
    # bursts allowed): a bucket of ``meta_pair_burst`` sends per user, one more every
    # ``meta_pair_interval_ms``; beyond it the send is refused with 131056. 0 = no limit.
    meta_pair_burst: int = Field(default=45, ge=0)
    meta_pair_interval_ms: int = Field(default=6000, ge=1)
    # Template pacing (seed 002 'Template held for Pacing'): sends of these template names,
    # and a ``meta_hold_rate`` share of other template sends, are answered
    # ``held_for_quality_assessment`` (then delivered as usual).
    meta_paced_templates: list[str] = Field(default_factory=list)
    meta_hold_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Seed 000: parent BSUIDs appear in answers and webhooks only when the business enabled them.
    meta_parent_bsuids: bool = True

    @field_validator("meta_webhook_url")
    @classmethod
    def _webhook_url_is_http(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the Meta webhook URL needs http:// or https://")
        return url

    @field_validator("gates")
    @classmethod
    def _gate_urls_are_http(cls, gates: dict[str, str]) -> dict[str, str]:
        for gate, url in gates.items():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"gate {gate!r} needs an http:// or https:// URL")
        return gates
