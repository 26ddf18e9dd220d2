"""Every knob of the dispatcher, read once from the environment (or ``.env``).

A connection setting left unset selects the embedded default for that part
(SQLite file, embedded Redis, built-in simulator of LINK and Meta); ``describe_mode`` says so
out loud so nobody sends to a place they did not mean to.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.errors import ConfigurationError
from dispatcher.guardrails.policy import Canary, FrequencyCap, Guardrails

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class Settings(BaseSettings):
    """Dispatcher settings; names match ARCHITECTURE 'Interfaces'."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite")
    redis_url: str | None = Field(default=None, description="broker + limiter; unset = embedded")
    link_base_url: str | None = Field(default=None, description="unset = built-in simulator")
    link_username: str | None = None
    link_password: SecretStr | None = None
    link_platform_id: str | None = None
    link_platform_partner_id: str | None = None
    link_event_report_gate: str | None = None
    link_timeout_seconds: float = 30.0
    meta_base_url: str | None = Field(
        default=None,
        description="Meta's Graph API, https://graph.facebook.com; unset = built-in simulator",
    )
    meta_access_token: SecretStr | None = Field(
        default=None, description="a system user's token with whatsapp_business_messaging"
    )
    meta_app_secret: SecretStr | None = Field(
        default=None, description="signs Meta's webhooks (X-Hub-Signature-256)"
    )
    meta_verify_token: SecretStr | None = Field(
        default=None, description="answers Meta's webhook verification (hub.verify_token)"
    )
    meta_api_version: str = Field(default="v23.0", pattern=r"^v[0-9]+\.[0-9]+$")
    meta_waba_id: str | None = Field(
        default=None, description="the WhatsApp Business Account: its message templates"
    )
    meta_timeout_seconds: float = 30.0
    limiter_margin_ms: int = Field(
        default=12,
        ge=0,
        le=500,
        description="the limiter spaces grants over 1 s + this, so requests that reach "
        "LINK this much late still fit the level; raise it for a distant LINK",
    )

    webhook_token: SecretStr | None = Field(
        default=None, description="shared secret the DLR/MO callers must present"
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs the console's session cookies; every `dispatcher serve` behind "
        "one address needs the same (unset: a random one a process, sessions end with it)",
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="send the console's cookie over HTTPS only (set it behind TLS)",
    )
    stop_drain_seconds: float = Field(
        default=2.0,
        ge=0,
        le=5,
        description="after SIGTERM, `dispatcher serve` answers /healthz 503 this long "
        "before it closes its listener, so a load balancer stops sending first",
    )
    blob_store: str | None = Field(
        default=None,
        description="where campaign files are kept: unset = the database; "
        "s3://bucket/prefix = an S3-compatible object store (pip install '.[s3]'; "
        "S3_ENDPOINT_URL and the AWS_* variables say where and who)",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="the object store's URL (MinIO, Ceph...); unset = AWS"
    )
    retention_days: float = Field(
        default=90,
        ge=0,
        description="a campaign's stored inputs and reports (phone numbers among them) "
        "are removed this many days after it ended (0: kept)",
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks of the reverse proxies in "
        "front of the webhook app, whose X-Forwarded-For names the caller",
    )
    opt_out_words: str = Field(
        default="UNSUBSCRIBE,STOPP,AVSLUTT,STOPALL,END,QUIT",
        description=(
            "comma-separated words that, sent alone (any case, surrounding punctuation "
            "ignored) as a text or a button reply, opt the sender out; STOP always does"
        ),
    )
    state_dir: Path = Field(
        default=Path(".dispatcher"),
        validation_alias="DISPATCHER_STATE_DIR",
        description="where the embedded mode keeps its SQLite file and Redis",
    )
    reports_dir: Path | None = Field(
        default=None, description="unset = a 'reports' folder inside the campaign folder"
    )
    drop_dir: Path = Field(
        default=Path("campaigns"),
        description="drop folder root: campaign folders placed in its inbox/ are sent",
    )
    drop_settle_seconds: float = Field(
        default=10.0,
        ge=0,
        description="a dropped folder is taken once unchanged this long (or at once "
        "with a READY file)",
    )
    worker_concurrency: int = Field(default=4, validation_alias="DISPATCHER_WORKER_CONCURRENCY")
    embedded: bool = Field(
        default=False,
        validation_alias="DISPATCHER_EMBEDDED",
        description="set by `dispatcher run` for the workers of its embedded stack",
    )
    broker_visibility_timeout: int = Field(
        default=3600,
        ge=5,
        description="seconds before Redis hands an unacknowledged task (its worker lost) "
        "to another worker; keep it longer than any task (retry waits stay under half)",
    )
    stale_submitting_seconds: float = Field(
        default=300,
        gt=0,
        description="a batch still claimed this long after its request started lost its "
        "worker: it becomes in doubt",
    )
    repeat_guard_days: float = Field(
        default=30,
        ge=0,
        description="a campaign whose files are identical to one this sender sent within "
        "this many days is refused without --again (0: never checked)",
    )
    resend_min_delay_seconds: float | None = Field(
        default=None,
        description="overrides every campaign's resend.min_delay_minutes (tests, rehearsals)",
    )
    sender_portfolios: dict[str, list[str]] = Field(
        default_factory=dict,
        description="which sender numbers share a business portfolio, as JSON: "
        '{"acme": ["+4790000000", "+4790000001"]}; the messaging tier counts unique '
        "people per portfolio (seed 004); a number named nowhere is a portfolio alone",
    )

    canary: Canary | None = Field(
        default=None,
        description="a canary for every campaign whose spec names none, as JSON: "
        '{"share": "2%", "min_people": 50, "wait": "10m"}; unset = none',
    )
    guardrails: Guardrails = Field(
        default_factory=Guardrails,
        description='the automatic pause thresholds, as JSON: {"spam_rate_limit": "5%"}; '
        "a campaign spec's guardrails change them for that campaign",
    )
    frequency_cap: FrequencyCap | None = Field(
        default=None,
        description='a frequency cap for every marketing campaign, as JSON: {"messages": 2, '
        '"period": "7d"}; unset = none',
    )
    alert_url: str | None = Field(
        default=None,
        description="receives a JSON POST (a Slack- and Teams-compatible 'text') when a "
        "campaign starts, is paused by a guardrail, completes or fails, and a daily digest",
    )
    alert_secret: SecretStr | None = Field(
        default=None,
        description="signs each alert (X-Dispatcher-Signature: t=<unix seconds>,v1=<hex "
        "HMAC-SHA256 of '<t>.<body>'>; operations.alerts.verify)",
    )
    alert_digest_hour: int = Field(
        default=8,
        ge=0,
        le=23,
        description="the hour (UTC) from which the day's digest of the last 24 hours is sent",
    )
    rate_card: Path | None = Field(
        default=None,
        description="a CSV of country,category,price for the forecast's expected cost",
    )

    @field_validator("sender_portfolios")
    @classmethod
    def _e164_senders(cls, portfolios: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for name, numbers in portfolios.items():
            for number in numbers:
                if not _E164.fullmatch(number):
                    raise ValueError(f"{name}: {number!r} is not an E.164 number (+digits)")
                if seen.setdefault(number, name) != name:
                    raise ValueError(f"{number} is in two portfolios: {seen[number]}, {name}")
        return portfolios

    def portfolio_of(self, source: str) -> frozenset[str]:
        """The sender numbers sharing ``source``'s business portfolio, itself included."""
        for numbers in self.sender_portfolios.values():
            if source in numbers:
                return frozenset(numbers)
        return frozenset({source})

    def portfolio_name(self, source: str | None) -> str:
        """The business portfolio ``source`` sends through: its ``sender_portfolios``
        name, else the number itself (a portfolio alone); '' when not known."""
        if not source:
            return ""
        for name, numbers in self.sender_portfolios.items():
            if source in numbers:
                return name
        return source

    @property
    def opt_out_keywords(self) -> frozenset[str]:
        """The opt-out words, case-folded, STOP included."""
        return opt_out_keywords(self.opt_out_words)

    @property
    def trusted_proxy_networks(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.trusted_proxies.split(",") if part.strip())

    @property
    def embedded_broker(self) -> bool:
        return self.redis_url is None

    @property
    def embedded_link(self) -> bool:
        return self.link_base_url is None and self.meta_base_url is None

    def require_production(self) -> None:
        """Fail fast, naming the variable, when external workers cannot share state.
        A deployment may use LINK, Meta or both: each one configured is checked whole."""
        if self.redis_url is None:
            return
        if self.database_url is None:
            raise ConfigurationError(
                "REDIS_URL is set, so workers run separately and need a shared database: "
                "set DATABASE_URL (PostgreSQL)"
            )
        if self.link_base_url is None and self.meta_base_url is None:
            raise ConfigurationError(
                "REDIS_URL is set, so workers run separately: set LINK_BASE_URL or "
                "META_BASE_URL (for rehearsal, the URL of `dispatcher simulate`)"
            )
        if self.meta_base_url is not None:
            self._require("META_BASE_URL", (
                ("META_ACCESS_TOKEN", self.meta_access_token),
                # Without it no status webhook can be trusted, so none is applied.
                ("META_APP_SECRET", self.meta_app_secret),
            ))  # fmt: skip
        if self.link_base_url is not None:
            self._require("LINK_BASE_URL", (
                ("LINK_USERNAME", self.link_username),
                ("LINK_PASSWORD", self.link_password),
                ("LINK_PLATFORM_ID", self.link_platform_id),
                ("LINK_PLATFORM_PARTNER_ID", self.link_platform_partner_id),
                # Without a gate LINK sends no reports and no campaign could complete.
                ("LINK_EVENT_REPORT_GATE", self.link_event_report_gate),
            ))  # fmt: skip

    @staticmethod
    def _require(given: str, needed: tuple[tuple[str, object], ...]) -> None:
        missing = [name for name, value in needed if value is None]
        if missing:
            raise ConfigurationError(f"{given} is set; also set {', '.join(missing)}")


def opt_out_keywords(words: str) -> frozenset[str]:
    """``"Avbryt, slutt"`` -> {"stop", "avbryt", "slutt"}: STOP always opts out."""
    found = {" ".join(word.split()).casefold() for word in words.split(",")}
    return frozenset((found - {""}) | {"stop"})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
