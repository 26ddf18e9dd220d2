"""LINK message bodies (seed 004 'Messages'), validated and written exactly as documented.

``parse_message`` turns a message as written (a campaign file, a fixture) into its
model, raising ``pydantic.ValidationError`` whose error paths name the offending field;
``.to_wire()`` gives the JSON LINK expects. Where the seed contradicts itself the models
accept each spelling it shows and write one; the decisions are commented where made.

Modules, one per noun: ``base`` (shared behaviour), ``media`` (media objects and
messages), ``text`` (text, location), ``contacts``, ``template``, ``interactive``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from pydantic.json_schema import DEFAULT_REF_TEMPLATE

from dispatcher.messages.base import WireModel
from dispatcher.messages.contacts import (
    Address,
    Contact,
    ContactsMessage,
    Email,
    Name,
    Org,
    Phone,
    Url,
)
from dispatcher.messages.interactive import (
    Body,
    ButtonInteractive,
    CardBody,
    CardImageHeader,
    CardMedia,
    CardVideoHeader,
    CatalogAction,
    CatalogInteractive,
    CatalogParameters,
    ContactRequestAction,
    ContactRequestInteractive,
    CtaUrlAction,
    CtaUrlInteractive,
    CtaUrlParameters,
    DocumentHeader,
    FlowAction,
    FlowActionPayload,
    FlowData,
    FlowInteractive,
    FlowParameters,
    Footer,
    Header,
    HeaderDocumentMedia,
    HeaderMedia,
    ImageHeader,
    Interactive,
    InteractiveMessage,
    ListAction,
    ListInteractive,
    ListSection,
    LocationRequestAction,
    LocationRequestInteractive,
    MediaCard,
    MediaCarouselAction,
    MediaCarouselInteractive,
    ProductAction,
    ProductCard,
    ProductCardAction,
    ProductCarouselAction,
    ProductCarouselInteractive,
    ProductInteractive,
    ProductItem,
    ProductListAction,
    ProductListInteractive,
    ProductSection,
    Provider,
    Reply,
    ReplyButton,
    ReplyButtonsAction,
    Row,
    TextHeader,
    VideoHeader,
)
from dispatcher.messages.media import (
    AudioMedia,
    AudioMessage,
    DocumentMedia,
    DocumentMessage,
    ImageMedia,
    ImageMessage,
    Media,
    StickerMedia,
    StickerMessage,
    VideoMedia,
    VideoMessage,
)
from dispatcher.messages.template import (
    ActionParameter,
    BodyComponent,
    ButtonComponent,
    CardButtonComponent,
    CardHeaderComponent,
    CarouselCard,
    CarouselComponent,
    Component,
    CouponCodeParameter,
    Currency,
    CurrencyParameter,
    DateTime,
    DateTimeParameter,
    DocumentParameter,
    HeaderComponent,
    ImageParameter,
    Language,
    LimitedTimeOffer,
    LimitedTimeOfferComponent,
    LimitedTimeOfferParameter,
    PayloadParameter,
    Template,
    TemplateButtonAction,
    TemplateMessage,
    TextParameter,
    VideoParameter,
)
from dispatcher.messages.text import (
    TEXT_BODY_MAX_CHARS,
    Location,
    LocationMessage,
    Text,
    TextMessage,
)

AnyMessage = (
    TemplateMessage
    | TextMessage
    | ImageMessage
    | AudioMessage
    | VideoMessage
    | DocumentMessage
    | StickerMessage
    | LocationMessage
    | ContactsMessage
    | InteractiveMessage
)
"""Any one message model; what ``parse_message`` returns."""

Message = Annotated[AnyMessage, Field(discriminator="type")]
"""A message, told apart by ``type`` (seed 004 'Message type')."""

_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(Message)


def parse_message(data: Mapping[str, Any]) -> AnyMessage:
    """The model of one message as written; raises ``pydantic.ValidationError``."""
    return _ADAPTER.validate_python(data)


def message_json_schema(ref_template: str = DEFAULT_REF_TEMPLATE) -> dict[str, Any]:
    """JSON Schema of a message as written (input form), for editors and ``dispatcher schema``.

    Its definitions are under ``$defs``; a document that embeds it elsewhere passes
    where they will be, e.g. ``"#/properties/message/$defs/{model}"``.
    """
    return _ADAPTER.json_schema(ref_template=ref_template)


__all__ = [
    "TEXT_BODY_MAX_CHARS",
    "ActionParameter",
    "Address",
    "AnyMessage",
    "AudioMedia",
    "AudioMessage",
    "Body",
    "BodyComponent",
    "ButtonComponent",
    "ButtonInteractive",
    "CardBody",
    "CardButtonComponent",
    "CardHeaderComponent",
    "CardImageHeader",
    "CardMedia",
    "CardVideoHeader",
    "CarouselCard",
    "CarouselComponent",
    "CatalogAction",
    "CatalogInteractive",
    "CatalogParameters",
    "Component",
    "Contact",
    "ContactRequestAction",
    "ContactRequestInteractive",
    "ContactsMessage",
    "CouponCodeParameter",
    "CtaUrlAction",
    "CtaUrlInteractive",
    "CtaUrlParameters",
    "Currency",
    "CurrencyParameter",
    "DateTime",
    "DateTimeParameter",
    "DocumentHeader",
    "DocumentMedia",
    "DocumentMessage",
    "DocumentParameter",
    "Email",
    "FlowAction",
    "FlowActionPayload",
    "FlowData",
    "FlowInteractive",
    "FlowParameters",
    "Footer",
    "Header",
    "HeaderComponent",
    "HeaderDocumentMedia",
    "HeaderMedia",
    "ImageHeader",
    "ImageMedia",
    "ImageMessage",
    "ImageParameter",
    "Interactive",
    "InteractiveMessage",
    "Language",
    "LimitedTimeOffer",
    "LimitedTimeOfferComponent",
    "LimitedTimeOfferParameter",
    "ListAction",
    "ListInteractive",
    "ListSection",
    "Location",
    "LocationMessage",
    "LocationRequestAction",
    "LocationRequestInteractive",
    "Media",
    "MediaCard",
    "MediaCarouselAction",
    "MediaCarouselInteractive",
    "Message",
    "Name",
    "Org",
    "PayloadParameter",
    "Phone",
    "ProductAction",
    "ProductCard",
    "ProductCardAction",
    "ProductCarouselAction",
    "ProductCarouselInteractive",
    "ProductInteractive",
    "ProductItem",
    "ProductListAction",
    "ProductListInteractive",
    "ProductSection",
    "Provider",
    "Reply",
    "ReplyButton",
    "ReplyButtonsAction",
    "Row",
    "StickerMedia",
    "StickerMessage",
    "Template",
    "TemplateButtonAction",
    "TemplateMessage",
    "Text",
    "TextHeader",
    "TextMessage",
    "TextParameter",
    "Url",
    "VideoHeader",
    "VideoMedia",
    "VideoMessage",
    "VideoParameter",
    "WireModel",
    "message_json_schema",
    "parse_message",
]
