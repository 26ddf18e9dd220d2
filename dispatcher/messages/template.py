"""Template messages (seed 004 'Template' and its 'Component' and 'Parameter' tables).

Seed 004 spells template buttons two ways: the Component table and the Interactive
template example write ``"subType": "quickReply"``, while the Carousel, Limited-time
Offer, Catalog and Coupon Code examples write ``"sub_type": "quick_reply"`` (or
``"CATALOG"``, ``"copy_code"``). Both spellings are accepted; each template is written
the way the seed's own example for its kind writes it (see ``Template``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_serializer,
    model_validator,
)

from dispatcher.messages.base import WireModel, first_duplicate, rule_error, rule_errors
from dispatcher.messages.media import Media

# --- parameters (seed 004 'Parameter') ----------------------------------------------


class TextParameter(WireModel):
    """Used in header, body and url-button components."""

    type: Literal["text"] = "text"
    text: str = Field(min_length=1)
    # Seed 004 'Text parameter': "Only required when sending a template with named
    # parameters".
    parameter_name: str | None = Field(default=None, alias="parameterName", min_length=1)


class PayloadParameter(WireModel):
    """The payload a quick-reply button sends back."""

    type: Literal["payload"] = "payload"
    payload: str


def _refuse_filename(field: str, media: Media) -> None:
    # Seed 004 'Image/Video parameter' follow the Image/Video message, which has no
    # filename; Media carries one for documents only.
    if media.filename is not None:
        raise rule_error(
            (field, "filename"), "filename applies to document parameters only", media.filename
        )


class ImageParameter(WireModel):
    type: Literal["image"] = "image"
    image: Media

    @model_validator(mode="after")
    def _no_filename(self) -> ImageParameter:
        _refuse_filename("image", self.image)
        return self


class VideoParameter(WireModel):
    type: Literal["video"] = "video"
    video: Media

    @model_validator(mode="after")
    def _no_filename(self) -> VideoParameter:
        _refuse_filename("video", self.video)
        return self


class DocumentParameter(WireModel):
    # Seed 004 'Document parameter': caption is not supported (Media has none, so a
    # caption is an unknown key), and PDF is the only supported format.
    type: Literal["document"] = "document"
    document: Media


class Currency(WireModel):
    fallback_value: str = Field(alias="fallbackValue", min_length=1)
    code: str = Field(min_length=1)
    # Seed 004 'Currency': a String of minor units x 1000 ("$100,99 is sent as 100990").
    amount1000: str = Field(pattern=r"^-?[0-9]+$")


class CurrencyParameter(WireModel):
    type: Literal["currency"] = "currency"
    currency: Currency


# Seed 004 'DateTime' documents these as String, yet its Media template example sends
# numbers: both are accepted and written back as given.
_DatePart = int | str | None


class DateTime(WireModel):
    fallback_value: str = Field(alias="fallbackValue", min_length=1)
    day_of_week: _DatePart = Field(default=None, alias="dayOfWeek")
    day_of_month: _DatePart = Field(default=None, alias="dayOfMonth")
    year: _DatePart = None
    month: _DatePart = None
    hour: _DatePart = None
    minute: _DatePart = None
    timestamp: _DatePart = None  # milliseconds

    _CALENDAR: ClassVar[dict[str, str]] = {
        "dayOfWeek": "day_of_week",
        "dayOfMonth": "day_of_month",
        "year": "year",
        "month": "month",
        "hour": "hour",
        "minute": "minute",
    }

    @model_validator(mode="after")
    def _calendar_or_timestamp(self) -> DateTime:
        # Seed 004 'DateTime': "Must contain dayOfWeek, dayOfMonth, year, month, hour,
        # minute together or timestamp alone."
        given = {key for key, name in self._CALENDAR.items() if getattr(self, name) is not None}
        if self.timestamp is not None:
            if given:
                raise rule_error(
                    ("timestamp",), "timestamp goes alone, without calendar fields", self.timestamp
                )
            return self
        if not given:
            raise rule_error(
                (), "give dayOfWeek, dayOfMonth, year, month, hour and minute, or timestamp alone"
            )
        missing = [key for key in self._CALENDAR if key not in given]
        if missing:
            raise rule_errors(
                ((key,), "required with the other calendar fields (or use timestamp)", None)
                for key in missing
            )
        return self


class DateTimeParameter(WireModel):
    type: Literal["dateTime"] = "dateTime"
    date_time: DateTime = Field(alias="dateTime")


class CouponCodeParameter(WireModel):
    type: Literal["coupon_code"] = "coupon_code"
    coupon_code: str = Field(min_length=1)


class TemplateButtonAction(WireModel):
    """The ``action`` of a template button parameter (seed 004 'Interactive action')."""

    # Seed 004 'Interactive action parameters': used "while sending Catalog Templates".
    thumbnail_product_retailer_id: str | None = Field(default=None, min_length=1)
    # Seed 004 'Interactive action': "flowToken ... Optional while sending Flow templates"
    # (camelCase there, unlike the interactive flow message's flow_token).
    flow_token: str | None = Field(default=None, alias="flowToken", min_length=1)


class ActionParameter(WireModel):
    type: Literal["action"] = "action"
    action: TemplateButtonAction


class LimitedTimeOffer(WireModel):
    expiration_time_ms: int = Field(gt=0)  # UNIX time in milliseconds


class LimitedTimeOfferParameter(WireModel):
    type: Literal["limited_time_offer"] = "limited_time_offer"
    limited_time_offer: LimitedTimeOffer

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        # Seed 004 'Limited Time Offer parameter' lists expiration_time_ms on the
        # parameter itself; its LTO example nests it in "limited_time_offer". Both are
        # accepted; the example's nested form is written.
        if isinstance(data, dict) and "expiration_time_ms" in data:
            if "limited_time_offer" in data:
                raise rule_error(
                    ("expiration_time_ms",), "give it inside limited_time_offer, not beside it"
                )
            data = dict(data)
            data["limited_time_offer"] = {"expiration_time_ms": data.pop("expiration_time_ms")}
        return data


# --- components (seed 004 'Component') ----------------------------------------------

HeaderParameter = Annotated[
    TextParameter | ImageParameter | VideoParameter | DocumentParameter,
    Field(discriminator="type"),
]
# Seed 004 'Component': "In the body you can have text, currency and dateTime parameters."
BodyParameter = Annotated[
    TextParameter | CurrencyParameter | DateTimeParameter, Field(discriminator="type")
]
ButtonParameter = Annotated[
    TextParameter | PayloadParameter | CouponCodeParameter | ActionParameter,
    Field(discriminator="type"),
]


class HeaderComponent(WireModel):
    type: Literal["header"] = "header"
    # Seed 004 'Component': "In the header you can have one or none of the media
    # parameters"; a header component that is present carries exactly one.
    parameters: Sequence[HeaderParameter] = Field(min_length=1, max_length=1)


class BodyComponent(WireModel):
    type: Literal["body"] = "body"
    # Seed 004 'Catalog template': "Body component required if template uses
    # variables, otherwise omit", so a body component has at least one.
    parameters: Sequence[BodyParameter] = Field(min_length=1)


# Each sub-type in both of the seed's spellings (see the module docstring).
TemplateButtonSubType = Literal[
    "quickReply", "quick_reply", "url", "flow", "catalog", "CATALOG", "copy_code"
]  # fmt: skip
CardButtonSubType = Literal["quick_reply", "quickReply", "url"]

_CAMEL_VALUES = {"quick_reply": "quickReply", "CATALOG": "catalog"}
_SNAKE_VALUES = {"quickReply": "quick_reply", "catalog": "CATALOG"}
_OTHER_KEY = {"subType": "sub_type", "sub_type": "subType"}


def _sub_type_field(key: str) -> Any:
    """Written as ``key``; either spelling read, the error path naming the one written."""
    return Field(alias=key, validation_alias=AliasChoices(key, _OTHER_KEY[key]))


def _not_both_keys(data: Any) -> Any:
    if isinstance(data, dict) and "subType" in data and "sub_type" in data:
        raise rule_error(("sub_type",), "give 'subType' or 'sub_type', not both", data["sub_type"])
    return data


def _either_key_in_schema(schema: dict[str, Any]) -> None:
    """Let the JSON Schema accept what validation accepts: either key."""
    properties = schema["properties"]
    key = "subType" if "subType" in properties else "sub_type"
    properties[_OTHER_KEY[key]] = properties[key]
    schema["required"] = [name for name in schema["required"] if name != key]
    schema["oneOf"] = [{"required": [key]}, {"required": [_OTHER_KEY[key]]}]


# Which parameter each sub-type takes (seed 004 'Component': "text parameter (for
# button sub type url) or a payload parameter (for button sub type quickReply)"; the
# LTO and Coupon Code examples give copy_code a coupon_code; the Catalog example gives
# its button an action, as Flow templates do with flowToken).
_BUTTON_PARAMETERS: dict[str, tuple[str, ...]] = {
    "quickReply": ("payload",),
    "url": ("text",),
    "flow": ("action",),
    "catalog": ("action",),
    "copy_code": ("coupon_code",),
}
# The seed's Carousel example sends a payload to a card's url button.
_CARD_BUTTON_PARAMETERS = {**_BUTTON_PARAMETERS, "url": ("text", "payload")}


def _check_button_parameters(
    sub_type: str, parameters: Sequence[WireModel], allowed: dict[str, tuple[str, ...]]
) -> None:
    kinds = allowed[_CAMEL_VALUES.get(sub_type, sub_type)]
    wrong = [
        (
            ("parameters", position, "type"),
            f"a {sub_type!r} button takes {' or '.join(kinds)} parameters",
            kind,
        )
        for position, parameter in enumerate(parameters)
        if (kind := getattr(parameter, "type", None)) not in kinds
    ]
    if wrong:
        raise rule_errors(wrong)


class ButtonComponent(WireModel):
    """A template button; ``Template`` decides between ``subType`` and ``sub_type``."""

    model_config = ConfigDict(json_schema_extra=_either_key_in_schema)

    type: Literal["button"] = "button"
    sub_type: TemplateButtonSubType = _sub_type_field("subType")
    # Seed 004 'Component' says String, but every top-level button example sends a
    # number; "0" is accepted and written as 0.
    index: int = Field(ge=0, le=9)
    parameters: Sequence[ButtonParameter] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        return _not_both_keys(data)

    @model_validator(mode="after")
    def _parameters_match(self) -> ButtonComponent:
        _check_button_parameters(self.sub_type, self.parameters, _BUTTON_PARAMETERS)
        return self

    @field_serializer("sub_type")
    def _camel_case(self, sub_type: str) -> str:
        return _CAMEL_VALUES.get(sub_type, sub_type)


def _index_text(value: Any) -> Any:
    # The seed's Carousel example writes card button indexes as strings ("0", "1");
    # a number is accepted and written that way.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class CardButtonComponent(WireModel):
    """A carousel card's button, always as the seed's Carousel example writes it."""

    model_config = ConfigDict(json_schema_extra=_either_key_in_schema)

    type: Literal["button"] = "button"
    sub_type: CardButtonSubType = _sub_type_field("sub_type")
    index: Annotated[str, BeforeValidator(_index_text)] = Field(pattern=r"^[0-9]$")
    parameters: list[ButtonParameter] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        return _not_both_keys(data)

    @model_validator(mode="after")
    def _parameters_match(self) -> CardButtonComponent:
        _check_button_parameters(self.sub_type, self.parameters, _CARD_BUTTON_PARAMETERS)
        return self

    @field_serializer("sub_type")
    def _snake_case(self, sub_type: str) -> str:
        return _SNAKE_VALUES.get(sub_type, sub_type)


class CardHeaderComponent(WireModel):
    type: Literal["header"] = "header"
    parameters: list[Annotated[ImageParameter | VideoParameter, Field(discriminator="type")]] = (
        Field(min_length=1, max_length=1)
    )


CardComponent = Annotated[
    CardHeaderComponent | BodyComponent | CardButtonComponent, Field(discriminator="type")
]


class CarouselCard(WireModel):
    card_index: int = Field(ge=0, le=9)
    components: list[CardComponent] = Field(min_length=1)

    @model_validator(mode="after")
    def _header_body_buttons(self) -> CarouselCard:
        # Seed 004 'Component': each card has "a components array with header,
        # optional body and one or more buttons".
        kinds = [component.type for component in self.components]
        if kinds.count("header") != 1 or kinds.count("body") > 1 or "button" not in kinds:
            raise rule_error(
                ("components",), "a card has one header, at most one body and 1+ buttons"
            )
        return self


class CarouselComponent(WireModel):
    type: Literal["carousel"] = "carousel"
    cards: list[CarouselCard] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _unique_card_indexes(self) -> CarouselComponent:
        duplicate = first_duplicate(card.card_index for card in self.cards)
        if duplicate is not None:
            raise rule_error(
                ("cards", duplicate, "card_index"),
                "card_index repeats an earlier card",
                self.cards[duplicate].card_index,
            )
        return self


class LimitedTimeOfferComponent(WireModel):
    type: Literal["limited_time_offer"] = "limited_time_offer"
    parameters: list[LimitedTimeOfferParameter] = Field(min_length=1, max_length=1)


Component = Annotated[
    HeaderComponent
    | BodyComponent
    | ButtonComponent
    | CarouselComponent
    | LimitedTimeOfferComponent,
    Field(discriminator="type"),
]


# --- the template ----------------------------------------------------------------------


class Language(WireModel):
    # Seed 004 'Language': must match the predefined template's language code.
    code: str = Field(min_length=2)


def _snake_case_kind(components: Sequence[Any]) -> bool:
    """Whether the seed writes this kind of template's buttons as ``sub_type``.

    Carousel, LTO, Catalog and Coupon Code examples do; text, media and interactive
    templates follow the Component table's ``subType``.
    """
    for component in components:
        if isinstance(component, CarouselComponent | LimitedTimeOfferComponent):
            return True
        if isinstance(component, ButtonComponent) and component.sub_type in (
            "catalog",
            "CATALOG",
            "copy_code",
        ):
            return True
    return False


class Template(WireModel):
    name: str = Field(min_length=1)
    language: Language
    # Seed 004 'Template': required; the REQUEST_CONTACT_INFO example sends [].
    components: Sequence[Component] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _kind_spelling(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if _snake_case_kind(self.components) and "components" in data:
            data["components"] = [_snake_case_button(c) for c in data["components"]]
        return data


def _snake_case_button(component: dict[str, Any]) -> dict[str, Any]:
    """A written button component respelled ``sub_type``/``quick_reply``, keys in place."""
    if component.get("type") != "button":
        return component
    return {
        ("sub_type" if key in _OTHER_KEY else key): (
            _SNAKE_VALUES.get(value, value) if key in _OTHER_KEY else value
        )
        for key, value in component.items()
    }


class TemplateMessage(WireModel):
    type: Literal["template"] = "template"
    template: Template
    # Seed 004 'POST /messages' Example#1 and the Carousel template example put
    # "components" beside "template"; the Template table and every other example put it
    # inside. Both are read; it is always written inside. Declared here (never written)
    # so the JSON Schema admits the seed's other form too.
    components: Sequence[Component] | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _components_beside_template(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("components") is None:
            return data
        template = data.get("template")
        if not isinstance(template, dict):
            return data  # a built Template: refused below
        if template.get("components"):
            raise rule_error(
                ("components",), "give components inside template or beside it, not both"
            )
        data = dict(data)
        data["template"] = {**template, "components": data.pop("components")}
        return data

    @model_validator(mode="after")
    def _components_inside(self) -> TemplateMessage:
        if self.components is not None:
            raise rule_error(("components",), "give components inside the Template")
        return self
