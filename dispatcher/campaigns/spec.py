"""Campaign spec: the small YAML/TOML file a marketing team drops next to its CSV.

Validated with pydantic before anything is loaded or sent; every error names the
field path (``message.template.header.image``) and the rule it broke.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import time as dt_time
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dispatcher.audience.identity import SendTo
from dispatcher.audience.recipients import (
    BSUID_COLUMNS,
    COUNTRY_COLUMNS,
    MSISDN_COLUMNS,
    PARENT_BSUID_COLUMNS,
    ColumnNames,
)
from dispatcher.campaigns import message_spec, spec_source
from dispatcher.errors import CampaignSpecError
from dispatcher.guardrails.policy import Canary, FrequencyCap
from dispatcher.providers import Level, Priority
from dispatcher.resending.policy import ResendPolicy

SPEC_NAMES = ("campaign.yaml", "campaign.yml", "campaign.toml")
#: The identifier columns of an ``ask_for_number`` follow-up's recipients.
ASK_COLUMNS = ("bsuid", "parent_bsuid")
#: Columns the follow-up's recipients do not carry over (they name identifiers).
IDENTIFIER_COLUMNS = frozenset(
    MSISDN_COLUMNS + BSUID_COLUMNS + PARENT_BSUID_COLUMNS + COUNTRY_COLUMNS
)

# At STANDARD (80 msg/s) a request with more destinations exceeds the level on its own
# (ARCHITECTURE 'Throughput'), so the default stays well below it.
DEFAULT_BATCH_SIZE = 50
# Seed 004 MessageRequest: absoluteValidityTime "defaults to 48h ahead".
LINK_DEFAULT_VALIDITY_MINUTES = 48 * 60
MAX_BATCH_SIZE = 1000
# A spec is a few KB. Bigger files, or YAML whose aliases expand a few lines into
# millions of values (a "billion laughs"), are refused before anything walks them.
MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_VALUES = 100_000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SenderSpec(_Spec):
    source: str = Field(description="the WhatsApp business number, E.164 with '+'")
    provider: Literal["link", "meta"] = Field(
        default="link",
        description="'link' (LINK Mobility, LINK_*) or 'meta' (Meta's Cloud API, META_*: "
        "one person a request)",
    )
    phone_number_id: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,32}$",
        description="Meta's id of the business number (WhatsApp Manager, API setup); "
        "required with provider: meta",
    )
    platform_id: str | None = Field(default=None, description="else LINK_PLATFORM_ID")
    platform_partner_id: str | None = Field(
        default=None, description="else LINK_PLATFORM_PARTNER_ID"
    )
    level: Level | None = Field(
        default=None, description="throughput level; else read from the phone number API"
    )
    ceiling_percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="share of the level this campaign may use (Meta counts every message "
        "of the number, replies included: e.g. 90 leaves room for a chatbot)",
    )
    tier_limit: Literal["hold", "ignore"] = Field(
        default="hold",
        description="more people than the messaging tier allows in 24 h: 'hold' sends up "
        "to the cap and the rest a day later each (spread over days); 'ignore' sends all",
    )

    # Seed 004 MessageRequest: optional strings passed through to LINK as given.
    platform_service_type: str | None = Field(
        default=None, min_length=1, max_length=255, description="LINK platformServiceType"
    )
    platform_service_id: str | None = Field(
        default=None, min_length=1, max_length=255, description="LINK platformServiceId"
    )
    platform_transaction_id: str | None = Field(
        default=None, min_length=1, max_length=255, description="LINK platformTransactionId"
    )

    min_quality: Literal["GREEN", "YELLOW", "RED"] | None = Field(
        default=None,
        description="refuse to start when the number's quality rating is below this "
        "(GREEN > YELLOW > RED; a rating not yet determined, NA, is not refused)",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        # Level maps what LINK may add later to UNKNOWN; a spec must say what it means.
        if value is not None and value not in (Level.STANDARD, Level.HIGH):
            raise ValueError("must be STANDARD (80 msg/s) or HIGH (1000 msg/s)")
        return value

    @field_validator("platform_service_type", "platform_service_id", "platform_transaction_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or value != value.strip()):
            raise ValueError("must be printable text without surrounding spaces")
        return value

    @model_validator(mode="after")
    def _meta_number(self) -> SenderSpec:
        if self.provider == "meta" and self.phone_number_id is None:
            raise ValueError("phone_number_id is required with provider: meta")
        if self.provider == "link" and self.phone_number_id is not None:
            raise ValueError("phone_number_id applies to provider: meta only")
        return self

    @property
    def address(self) -> str:
        """The sender as its provider's API names it: LINK by the number, Meta by the
        phone number id."""
        return self.phone_number_id if self.phone_number_id is not None else self.source

    @property
    def platform_service(self) -> tuple[str | None, str | None, str | None]:
        """platformServiceType, platformServiceId, platformTransactionId."""
        return (self.platform_service_type, self.platform_service_id, self.platform_transaction_id)

    @field_validator("source")
    @classmethod
    def _e164(cls, value: str) -> str:
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(
                "must be a phone number in international format, e.g. +4790000000"
            ) from exc
        if not phonenumbers.is_possible_number(number):
            raise ValueError("is not a possible phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class WindowSpec(_Spec):
    """Send only between ``start`` and ``end`` local time (``dispatcher.sending.windows``)."""

    start: dt_time = Field(description="local opening time, e.g. '09:00'")
    end: dt_time = Field(description="local closing time, e.g. '20:00' (may be past midnight)")
    time_zone: str = Field(
        default="recipient",
        description="'recipient': each person's own, from their number; or one IANA zone "
        "(e.g. Europe/Oslo) for everyone",
    )
    fallback_time_zone: str = Field(
        default="UTC", description="for people whose number tells no time zone"
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 20:00 as the base-60 number 1200 (minutes); a bare
        # number below 24 is an hour.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            return dt_time(value) if value < 24 else dt_time(value // 60, value % 60)
        return value

    @field_validator("time_zone", "fallback_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value == "recipient":
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Oslo)") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> WindowSpec:
        if self.start == self.end:
            raise ValueError("start and end are the same: the window would never open")
        return self

    def as_tuple(self) -> tuple[dt_time, dt_time, str, str]:
        return (self.start, self.end, self.time_zone, self.fallback_time_zone)


class ColumnsSpec(_Spec):
    """Header names of the identifier columns, when a file does not use the usual ones
    (phone/msisdn/mobile, bsuid/whatsapp_user_id, parent_bsuid, country)."""

    phone: str | None = Field(default=None, description="the phone number column")
    bsuid: str | None = Field(default=None, description="the BSUID column (CC.<id>)")
    parent_bsuid: str | None = Field(default=None, description="the parent BSUID column")
    country: str | None = Field(
        default=None, description="per-row ISO country for national numbers"
    )

    def names(self) -> ColumnNames:
        defaults = ColumnNames()
        return ColumnNames(
            phone=(self.phone,) if self.phone else defaults.phone,
            bsuid=(self.bsuid,) if self.bsuid else defaults.bsuid,
            parent_bsuid=(self.parent_bsuid,) if self.parent_bsuid else defaults.parent_bsuid,
            country=(self.country,) if self.country else defaults.country,
        )

    def named(self) -> dict[str, str]:
        """The columns this spec names explicitly (each file must have them)."""
        return {k: v for k, v in self.model_dump().items() if v}


class TemplateCategory(StrEnum):
    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"


class CampaignSpec(_Spec):
    """What to send, from whom, to whom."""

    name: str = Field(min_length=1, max_length=200)
    sender: SenderSpec
    message: dict[str, Any] = Field(
        description="the LINK message (seed 004 'Messages') with {column} placeholders "
        "and 'file:' for media to upload; see message_spec"
    )
    template_category: TemplateCategory | None = Field(
        default=None,
        description="authentication templates are never sent to BSUIDs (Meta error 131062)",
    )
    outside_care_window: Literal["skip", "send"] = Field(
        default="skip",
        description="non-template messages need the 24-hour customer care window; "
        "people without a message from them in the last 24 h are skipped",
    )
    defaults: dict[str, str] = Field(
        default_factory=dict, description="value for a column that is empty in a row"
    )
    recipients: list[str] = Field(min_length=1, description="CSV file(s), relative to the spec")
    default_region: str | None = Field(
        default=None, description="ISO country for numbers written without a country code"
    )
    columns: ColumnsSpec = Field(default_factory=ColumnsSpec)
    send_at: AwareDatetime | None = Field(
        default=None,
        description="start no earlier than this (with its UTC offset, e.g. "
        "2026-12-01T09:00:00+01:00); unset = now",
    )
    sending_window: WindowSpec | None = Field(
        default=None,
        description="send only within these local hours of each recipient; people "
        "outside wait for their window to open",
    )
    send_to: SendTo = Field(
        default="phone",
        description="which identifier of a person to send to when several are known: "
        "'phone' (default; works for every template), 'bsuid' or 'parent_bsuid'",
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="people a request carries at most; full requests take the largest size "
        "that divides the sender's level (STANDARD 80 at 50: 40), so they fill each second",
    )
    priority: Priority = Priority.NORMAL
    log_message_content: bool = Field(
        default=False,
        description="ask LINK to log the messages' content (customParameters "
        "ott.whatsapp.logMessageContent), so LINK Support can find them by it",
    )
    validity_minutes: int | None = Field(
        default=None, ge=1, le=30 * 24 * 60, description="LINK defaults to 48 h"
    )
    validity_as: Literal["absolute", "relative"] = Field(
        default="absolute",
        description="how validity_minutes goes to LINK: 'absolute' (absoluteValidityTime, "
        "the moment it ends) or 'relative' (relativeValidityTime, the milliseconds left, "
        "counted by LINK's clock from when it takes the request); a resend sends what is "
        "left of the first submission's validity either way",
    )
    resend: ResendPolicy = Field(default_factory=ResendPolicy)
    allow_repeat: bool = Field(
        default=False,
        description="send even when the same files (spec, recipients, media) were sent "
        "by this sender recently; else such a repeat is refused (REPEAT_GUARD_DAYS)",
    )
    ask_for_number: dict[str, Any] | None = Field(
        default=None,
        description="a follow-up asking the people the campaign reached and knows only "
        "by BSUID for their phone number: an interactive contact_request, or a template "
        "with a REQUEST_CONTACT_INFO button; sent as a campaign of its own once this one "
        "completes (the care window rule applies to it as to the message). It may use "
        "the columns the message uses",
    )

    canary: Canary | None = Field(
        default=None,
        description="send a share first and hold the rest until its outcomes are judged, "
        "e.g. {share: 2%, min_people: 50, wait: 10m}; unset = CANARY (off by default)",
    )
    guardrails: dict[str, Any] | None = Field(
        default=None,
        description="thresholds that pause the campaign on bad signals, over GUARDRAILS "
        "(dispatcher.guardrails.policy.Guardrails: e.g. {spam_rate_limit: 3%, window: 5m})",
    )
    frequency_cap: FrequencyCap | Literal["off"] | None = Field(
        default=None,
        description="at most N marketing messages to a person per period from this "
        "portfolio, across campaigns, e.g. {messages: 2, period: 7d}; unset = FREQUENCY_CAP "
        "(off by default); 'off' = not capped",
    )

    @field_validator("frequency_cap", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as false."""
        return "off" if value is False else value

    @field_validator("guardrails", mode="after")
    @classmethod
    def _known_thresholds(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from dispatcher.guardrails.policy import Guardrails, overlay

            overlay(Guardrails(), value)  # names the field that is wrong
        return value

    @field_validator("message", mode="after")
    @classmethod
    def _normalised(cls, value: dict[str, Any]) -> dict[str, Any]:
        return message_spec.normalise(value)

    @field_validator("ask_for_number", mode="after")
    @classmethod
    def _asks_for_number(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        """A message that can ask for the number, using only values the follow-up has:
        its people's BSUIDs and the values the campaign's message used (Message.params)."""
        if value is None:
            return None
        value = message_spec.normalise(value)
        interactive = value.get("interactive")
        kind = interactive.get("type") if isinstance(interactive, dict) else None
        if value.get("type") != "template" and kind != "contact_request":
            raise ValueError(
                "must be an interactive contact_request or a template with a "
                "REQUEST_CONTACT_INFO button (seed 004 'Request phone numbers')"
            )
        if any(True for _ in message_spec.media_refs(value)):
            raise ValueError("media by 'file:' is not supported here: give it by id or link")
        message = info.data.get("message")
        known = set(info.data.get("defaults") or {})
        if isinstance(message, dict):
            known |= message_spec.columns(message)
        known = (known - IDENTIFIER_COLUMNS) | set(ASK_COLUMNS)
        unknown = sorted(message_spec.columns(value) - known)
        if unknown:
            raise ValueError(
                f"uses {', '.join('{' + c + '}' for c in unknown)}: the follow-up knows "
                "bsuid, parent_bsuid and the other columns the message uses (and defaults)"
            )
        return value

    @field_validator("recipients", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 country code phonenumbers knows")
        return region

    @model_validator(mode="after")
    def _category_fits(self) -> CampaignSpec:
        if self.template_category is not None and not self.is_template:
            raise ValueError("template_category applies to template messages only")
        return self

    @property
    def people_per_request(self) -> int:
        """People one request carries at most: Meta's Cloud API takes one recipient a
        request; LINK up to ``batch_size``."""
        return 1 if self.sender.provider == "meta" else self.batch_size

    @property
    def validity(self) -> timedelta:
        return timedelta(minutes=self.validity_minutes or LINK_DEFAULT_VALIDITY_MINUTES)

    @property
    def is_template(self) -> bool:
        return self.message.get("type") == "template"

    @property
    def authentication(self) -> bool:
        return self.template_category is TemplateCategory.AUTHENTICATION

    def placeholders(self) -> set[str]:
        """Every recipient column the message refers to (defaults cover empty cells)."""
        return message_spec.columns(self.message)


class LoadedCampaign(BaseModel):
    """A validated spec together with the folder its relative paths start from."""

    model_config = ConfigDict(frozen=True)

    spec: CampaignSpec
    spec_path: Path
    # The files as stored when the campaign was registered, by the name the spec gives
    # them, fetched onto this host (``campaigns.inputs.materialized``); else the folder.
    files: dict[str, Path] = {}

    @property
    def folder(self) -> Path:
        return self.spec_path.parent

    def resolve(self, relative: str) -> Path:
        found = self.files.get(relative)
        return found if found is not None else (self.folder / relative).resolve()

    def recipient_files(self) -> list[Path]:
        return [self.resolve(p) for p in self.spec.recipients]

    def media_refs(self) -> list[message_spec.MediaRef]:
        return list(message_spec.media_refs(self.spec.message))


def find_spec(path: Path) -> Path:
    """The spec file itself, or the one spec file inside a campaign folder."""
    if path.is_dir():
        for name in SPEC_NAMES:
            if (path / name).is_file():
                return path / name
        raise CampaignSpecError(str(path), [("(file)", f"no {' / '.join(SPEC_NAMES)} here")])
    if not path.is_file():
        raise CampaignSpecError(str(path), [("(file)", "no such file or folder")])
    return path


def load_campaign(path: Path) -> LoadedCampaign:
    """Read and validate a spec; check that the files it names exist."""
    spec_path = find_spec(path).resolve()
    raw, written = _parse(spec_path)
    loaded, found = _validated(raw, spec_path)
    if loaded is None:
        raise CampaignSpecError(str(spec_path), _explained(found, raw, written, spec_path))
    return loaded


def _validated(raw: Any, spec_path: Path) -> tuple[LoadedCampaign | None, list[tuple[str, str]]]:
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        return None, _problems(exc)
    loaded = LoadedCampaign(spec=spec, spec_path=spec_path)
    found = [
        (f"recipients[{i}]", f"file not found: {p}")
        for i, p in enumerate(loaded.recipient_files())
        if not p.is_file()
    ]
    found += message_spec.check(spec.message, loaded.folder)
    if spec.ask_for_number is not None:
        found += [
            ("ask_for_number" + where.removeprefix("message"), problem)
            for where, problem in message_spec.check(spec.ask_for_number, loaded.folder)
        ]
    if spec.sender.provider == "meta" and isinstance(raw, dict) and "batch_size" in raw:
        # Asked of the file, not the model: a stored spec carries every default.
        found.append(("batch_size", "does not apply to provider: meta (Meta's Cloud API "
                      "takes one person a request)"))  # fmt: skip
    return (None, found) if found else (loaded, [])


def _explained(
    found: list[tuple[str, str]],
    raw: Any,
    written: dict[spec_source.KeyPath, spec_source.Written],
    spec_path: Path,
) -> list[tuple[str, str]]:
    """Problems at a value YAML retyped (``NO`` read as false) say so, when the value
    in quotes would have done: the spec is checked again with those values as text."""
    at_fault = {
        where: value
        for value in written.values()
        if (where := message_spec.dotted(value.path)) in dict(found)
    }
    if not at_fault:
        return found
    quoted = copy.deepcopy(raw)
    for where, value in list(at_fault.items()):
        *parents, last = value.path
        try:
            node = quoted
            for part in parents:
                node = node[part]
            node[last] = value.text
        except (KeyError, IndexError, TypeError):  # under a !!omap (pairs, not a mapping)
            del at_fault[where]
    still = [where for where, _ in _validated(quoted, spec_path)[1]]

    def fixed(where: str) -> bool:
        return not any(p == where or p.startswith((f"{where}.", f"{where}[")) for p in still)

    return [
        (where, at_fault[where].hint() if where in at_fault and fixed(where) else problem)
        for where, problem in found
    ]


def _parse(spec_path: Path) -> tuple[Any, dict[spec_source.KeyPath, spec_source.Written]]:
    size = spec_path.stat().st_size
    if size > MAX_SPEC_BYTES:
        problem = f"{size} bytes; a spec may have at most {MAX_SPEC_BYTES}"
        raise CampaignSpecError(str(spec_path), [("(file)", problem)])
    try:
        text = spec_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start}): save the spec as UTF-8"
        raise CampaignSpecError(str(spec_path), [("(file)", problem)]) from None
    written: dict[spec_source.KeyPath, spec_source.Written] = {}
    try:
        if spec_path.suffix == ".toml":
            parsed = tomllib.loads(text)
        else:
            parsed, written = spec_source.load_yaml(text, MAX_SPEC_VALUES)
    except RecursionError:
        raise CampaignSpecError(str(spec_path), [("(syntax)", "nested too deeply")]) from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        problem = spec_source.syntax_problem(spec_path.name, exc, text)
        raise CampaignSpecError(str(spec_path), [("(syntax)", problem)]) from None
    if _too_many_values(parsed):
        problem = f"expands to more than {MAX_SPEC_VALUES} values (YAML aliases?)"
        raise CampaignSpecError(str(spec_path), [("(file)", problem)])
    return parsed, written


def _too_many_values(root: Any) -> bool:
    """Count values as a walk would meet them (an alias counts each time it is used),
    stopping at the limit: the cost is bounded however far the aliases expand."""
    pending, seen = [root], 0
    while pending:
        node = pending.pop()
        seen += 1
        if seen > MAX_SPEC_VALUES:
            return True
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return False


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    found = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = spec_source.unknown_key(loc[-1], spec_source.keys_at(CampaignSpec, loc[:-1]))
        found.append((message_spec.dotted(loc) or "(top level)", message))
    return found
