"""Campaign spec: the small YAML/TOML file a marketing team drops next to its CSV.

Validated with pydantic before anything is loaded or sent; every error names the
field path (``message.template.header.image``) and the rule it broke.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dispatcher.errors import CampaignSpecError
from dispatcher.link.models import Level, Priority
from dispatcher.render import placeholders

SPEC_NAMES = ("campaign.yaml", "campaign.yml", "campaign.toml")
# At STANDARD (80 msg/s) a request with more destinations exceeds the level on its own
# (ARCHITECTURE 'Throughput'), so the default stays well below it.
DEFAULT_BATCH_SIZE = 50
MAX_BATCH_SIZE = 1000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SenderSpec(_Spec):
    source: str = Field(description="the WhatsApp business number, E.164 with '+'")
    platform_id: str | None = Field(default=None, description="else LINK_PLATFORM_ID")
    platform_partner_id: str | None = Field(
        default=None, description="else LINK_PLATFORM_PARTNER_ID"
    )
    level: Level | None = Field(
        default=None, description="throughput level; else read from the phone number API"
    )

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


class HeaderSpec(_Spec):
    """A template header: one media file/URL, or a text parameter."""

    image: str | None = None
    video: str | None = None
    document: str | None = None
    text: str | None = None
    filename: str | None = Field(default=None, description="shown for documents")

    @model_validator(mode="after")
    def _exactly_one(self) -> HeaderSpec:
        given = [k for k in ("image", "video", "document", "text") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of image, video, document or text")
        return self

    @property
    def media_kind(self) -> Literal["image", "video", "document"] | None:
        for kind in ("image", "video", "document"):
            if getattr(self, kind):
                return kind  # type: ignore[return-value]
        return None

    @property
    def media_ref(self) -> str | None:
        kind = self.media_kind
        return getattr(self, kind) if kind else None


class ButtonSpec(_Spec):
    sub_type: Literal["quickReply", "url"]
    index: int = Field(ge=0, le=9)
    text: str | None = Field(default=None, description="url button suffix")
    payload: str | None = Field(default=None, description="quick reply payload")

    @model_validator(mode="after")
    def _matches_sub_type(self) -> ButtonSpec:
        if self.sub_type == "url" and not self.text:
            raise ValueError("a url button needs 'text'")
        if self.sub_type == "quickReply" and not self.payload:
            raise ValueError("a quickReply button needs 'payload'")
        return self


class TemplateSpec(_Spec):
    name: str = Field(min_length=1)
    language: str = Field(min_length=2, description="template language code, e.g. en_US")
    header: HeaderSpec | None = None
    body: list[str] | dict[str, str] = Field(
        default_factory=list,
        description="positional parameters, or named ones (parameterName: value)",
    )
    buttons: list[ButtonSpec] = Field(default_factory=list)


class TemplateMessageSpec(_Spec):
    type: Literal["template"]
    template: TemplateSpec


class TextMessageSpec(_Spec):
    type: Literal["text"]
    text: str = Field(min_length=1, max_length=4096)
    preview_url: bool = False


MessageSpec = Annotated[TemplateMessageSpec | TextMessageSpec, Field(discriminator="type")]


class CampaignSpec(_Spec):
    """What to send, from whom, to whom."""

    name: str = Field(min_length=1, max_length=200)
    sender: SenderSpec
    message: MessageSpec
    recipients: list[str] = Field(min_length=1, description="CSV file(s), relative to the spec")
    default_region: str | None = Field(
        default=None, description="ISO country for numbers written without a country code"
    )
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE)
    priority: Priority = Priority.NORMAL
    validity_minutes: int | None = Field(
        default=None, ge=1, le=30 * 24 * 60, description="LINK defaults to 48 h"
    )

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

    def placeholders(self) -> set[str]:
        """Every recipient column the message refers to."""
        texts: list[str] = []
        message = self.message
        if isinstance(message, TextMessageSpec):
            texts.append(message.text)
        else:
            template = message.template
            body = template.body
            texts.extend(body.values() if isinstance(body, dict) else body)
            if template.header and template.header.text:
                texts.append(template.header.text)
            texts.extend(b.text or b.payload or "" for b in template.buttons)
        return set().union(*(placeholders(t) for t in texts)) if texts else set()


class LoadedCampaign(BaseModel):
    """A validated spec together with the folder its relative paths start from."""

    model_config = ConfigDict(frozen=True)

    spec: CampaignSpec
    spec_path: Path

    @property
    def folder(self) -> Path:
        return self.spec_path.parent

    def resolve(self, relative: str) -> Path:
        return (self.folder / relative).resolve()

    def recipient_files(self) -> list[Path]:
        return [self.resolve(p) for p in self.spec.recipients]

    def media_file(self) -> Path | None:
        message = self.spec.message
        if isinstance(message, TemplateMessageSpec) and message.template.header:
            ref = message.template.header.media_ref
            if ref and not ref.startswith(("http://", "https://")):
                return self.resolve(ref)
        return None


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
    raw = _parse(spec_path)
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise CampaignSpecError(str(spec_path), _problems(exc)) from None
    loaded = LoadedCampaign(spec=spec, spec_path=spec_path)
    missing = [
        (f"recipients[{i}]", f"file not found: {p}")
        for i, p in enumerate(loaded.recipient_files())
        if not p.is_file()
    ]
    media = loaded.media_file()
    if media is not None and not media.is_file():
        missing.append(("message.template.header", f"media file not found: {media}"))
    if missing:
        raise CampaignSpecError(str(spec_path), missing)
    return loaded


def _parse(spec_path: Path) -> Any:
    text = spec_path.read_text(encoding="utf-8-sig")
    try:
        if spec_path.suffix == ".toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise CampaignSpecError(str(spec_path), [("(syntax)", str(exc))]) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_url=False):
        # pydantic puts the union tag ('template' / 'text') in the path after
        # 'message'; the user never wrote it there, so leave it out.
        loc = [str(part) for part in error["loc"]]
        if len(loc) >= 3 and loc[0] == "message" and loc[1] in ("template", "text"):
            del loc[1]
        path = _dotted(loc) or "(top level)"
        problems.append((path, error["msg"]))
    return problems


def _dotted(parts: list[str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out
