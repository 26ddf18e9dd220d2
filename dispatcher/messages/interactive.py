"""Interactive messages (seed 004 'Interactive message' and its full examples).

``interactive.type`` picks the kind. Product and media carousels both say
``"carousel"``; their cards tell them apart (``"type": "product"`` or ``"cta_url"``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from dispatcher.messages.base import WireModel, first_duplicate, rule_error
from dispatcher.messages.media import OneSource

# --- header, body, footer (seed 004 'Interactive message', 'Interactive header') -------


class Provider(WireModel):
    name: str = Field(min_length=1)


class HeaderMedia(OneSource):
    """Seed 004 'Interactive media': id or link, optionally through a media provider.

    The link is not checked for http(s): with a provider the seed writes it as
    ``the-provider-name/protocol://the-url``.
    """

    caption: str | None = None
    provider: Provider | None = None


class HeaderDocumentMedia(HeaderMedia):
    # Seed 004 'Interactive media': filename is for "document media" only.
    filename: str | None = None


class TextHeader(WireModel):
    type: Literal["text"] = "text"
    text: str = Field(min_length=1, max_length=60)


class ImageHeader(WireModel):
    type: Literal["image"] = "image"
    image: HeaderMedia


class VideoHeader(WireModel):
    type: Literal["video"] = "video"
    video: HeaderMedia


class DocumentHeader(WireModel):
    type: Literal["document"] = "document"
    document: HeaderDocumentMedia


Header = Annotated[
    TextHeader | ImageHeader | VideoHeader | DocumentHeader, Field(discriminator="type")
]


class Body(WireModel):
    text: str = Field(min_length=1, max_length=1024)


class Footer(WireModel):
    text: str = Field(min_length=1, max_length=60)


class _Interactive(WireModel):
    """Seed 004 'Interactive message': header (optional unless product list), body, footer."""

    TAG: ClassVar[str]

    header: Header | None = None
    body: Body
    footer: Footer | None = None


# --- list and reply buttons -------------------------------------------------------------


class Row(WireModel):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=24)
    description: str | None = Field(default=None, max_length=72)


class ListSection(WireModel):
    title: str = Field(min_length=1, max_length=24)
    rows: list[Row] = Field(min_length=1)


class ListAction(WireModel):
    # Seed 004 'Interactive action': "It cannot be an empty string ... Max length: 20".
    button: str = Field(min_length=1, max_length=20)
    sections: list[ListSection] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _ten_unique_rows(self) -> ListAction:
        # Seed 004: list messages are "a menu of up to 10 options"; 'Interactive
        # section': "Unique row id".
        rows = [(s, r) for s, section in enumerate(self.sections) for r in range(len(section.rows))]
        if len(rows) > 10:
            raise rule_error(("sections",), f"a list has at most 10 rows in all, not {len(rows)}")
        ids = [self.sections[s].rows[r].id for s, r in rows]
        duplicate = first_duplicate(ids)
        if duplicate is not None:
            s, r = rows[duplicate]
            raise rule_error(
                ("sections", s, "rows", r, "id"), "row id repeats an earlier row", ids[duplicate]
            )
        return self


class ListInteractive(_Interactive):
    TAG = "list"
    type: Literal["list"] = "list"
    # Seed 004 'Interactive header': "List messages only support text."
    header: TextHeader | None = None
    action: ListAction


class Reply(WireModel):
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=20)


class ReplyButton(WireModel):
    type: Literal["reply"] = "reply"
    reply: Reply


class ReplyButtonsAction(WireModel):
    # Seed 004: reply buttons are "up to 3 options".
    buttons: list[ReplyButton] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _unique(self) -> ReplyButtonsAction:
        # Seed 004 'Interactive button': "Unique identifier" (id); title "must be unique
        # within the message".
        for key in ("id", "title"):
            values = [getattr(button.reply, key) for button in self.buttons]
            duplicate = first_duplicate(values)
            if duplicate is not None:
                raise rule_error(
                    ("buttons", duplicate, "reply", key),
                    f"button {key} repeats an earlier button",
                    values[duplicate],
                )
        return self


class ButtonInteractive(_Interactive):
    TAG = "button"
    type: Literal["button"] = "button"
    action: ReplyButtonsAction


# --- products and catalog ---------------------------------------------------------------

# Seed 004 'Interactive action' marks thumbnail_product_retailer_id "Required for Single
# Product and Multi-Product Messages", but neither full example sends it: it is optional.


class ProductAction(WireModel):
    catalog_id: str = Field(min_length=1)
    product_retailer_id: str = Field(min_length=1)
    thumbnail_product_retailer_id: str | None = Field(default=None, min_length=1)


class ProductInteractive(_Interactive):
    TAG = "product"
    type: Literal["product"] = "product"
    action: ProductAction


class ProductItem(WireModel):
    product_retailer_id: str = Field(min_length=1)


class ProductSection(WireModel):
    title: str = Field(min_length=1, max_length=24)
    # Seed 004 'Interactive section': "a minimum of 1 product per section".
    product_items: list[ProductItem] = Field(min_length=1)


class ProductListAction(WireModel):
    catalog_id: str = Field(min_length=1)
    sections: list[ProductSection] = Field(min_length=1, max_length=10)
    thumbnail_product_retailer_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _thirty_products(self) -> ProductListAction:
        # Seed 004 'Interactive section': "a maximum of 30 products across all sections".
        total = sum(len(section.product_items) for section in self.sections)
        if total > 30:
            raise rule_error(("sections",), f"at most 30 products in all sections, not {total}")
        return self


class ProductListInteractive(_Interactive):
    TAG = "product_list"
    type: Literal["product_list"] = "product_list"
    # Seed 004 'Interactive message': header "Yes if type is product list".
    header: Header
    action: ProductListAction


class CatalogParameters(WireModel):
    thumbnail_product_retailer_id: str | None = Field(default=None, min_length=1)


class CatalogAction(WireModel):
    name: Literal["catalog_message"] = "catalog_message"
    # Seed 004 'Catalog Message type': "Parameters object is optional".
    parameters: CatalogParameters | None = None


class CatalogInteractive(_Interactive):
    TAG = "catalog_message"
    type: Literal["catalog_message"] = "catalog_message"
    action: CatalogAction


# --- flow -------------------------------------------------------------------------------


class FlowData(BaseModel):
    """Input for the Flow's first screen.

    Its keys are whatever the Flow defines, so unknown keys are allowed here alone;
    the ones the seed documents are type-checked.
    """

    model_config = ConfigDict(extra="allow")

    product_name: str | None = None
    product_description: str | None = None
    product_price: int | None = Field(default=None, strict=True)

    @model_validator(mode="after")
    def _not_empty(self) -> FlowData:
        # Seed 004: "If provided, this must be a non-empty object."
        if not self.model_dump(exclude_none=True):
            raise rule_error((), "flow data, when given, must not be empty")
        return self


class FlowActionPayload(WireModel):
    screen: str | None = Field(default=None, min_length=1)
    data: FlowData | None = None


class FlowParameters(WireModel):
    mode: Literal["draft", "published"] | None = None
    flow_message_version: Literal["3"]
    flow_token: str | None = Field(default=None, min_length=1)
    flow_id: str = Field(min_length=1)
    # Seed 004: "Character limit - 20 characters (no emoji)". Emoji are not detected.
    flow_cta: str = Field(min_length=1, max_length=20)
    flow_action: Literal["navigate", "data_exchange"] | None = None
    flow_action_payload: FlowActionPayload | None = None

    @model_validator(mode="after")
    def _payload_with_navigate(self) -> FlowParameters:
        # Seed 004: flow_action_payload is "Required if flow_action field is equal to
        # value navigate. Should be omitted otherwise." flow_action defaults to navigate,
        # yet the seed's minimal example omits both, so only an explicit "navigate"
        # requires the payload.
        if self.flow_action == "data_exchange" and self.flow_action_payload is not None:
            raise rule_error(
                ("flow_action_payload",), "only with flow_action 'navigate'; omit it here"
            )
        if self.flow_action == "navigate" and self.flow_action_payload is None:
            raise rule_error(("flow_action_payload",), "required when flow_action is 'navigate'")
        return self


class FlowAction(WireModel):
    name: Literal["flow"] = "flow"
    parameters: FlowParameters


class FlowInteractive(_Interactive):
    TAG = "flow"
    type: Literal["flow"] = "flow"
    action: FlowAction


# --- CTA URL, location request, contact request ----------------------------------------


class CtaUrlParameters(WireModel):
    # Seed 004 'Interactive Media carousel action cards parameters': "Max 20 chars";
    # the CTA URL table gives no limit and Meta applies the same 20 there.
    display_text: str = Field(min_length=1, max_length=20)
    url: str = Field(min_length=1)


class CtaUrlAction(WireModel):
    name: Literal["cta_url"] = "cta_url"
    parameters: CtaUrlParameters


class CtaUrlInteractive(_Interactive):
    TAG = "cta_url"
    type: Literal["cta_url"] = "cta_url"
    action: CtaUrlAction


class LocationRequestAction(WireModel):
    name: Literal["send_location"] = "send_location"


class LocationRequestInteractive(_Interactive):
    TAG = "location_request_message"
    type: Literal["location_request_message"] = "location_request_message"
    action: LocationRequestAction


class ContactRequestAction(WireModel):
    # Seed 004 'Request phone numbers from users who have adopted usernames'.
    name: Literal["request_contact_info"] = "request_contact_info"


class ContactRequestInteractive(_Interactive):
    TAG = "contact_request"
    type: Literal["contact_request"] = "contact_request"
    action: ContactRequestAction


# --- carousels --------------------------------------------------------------------------

_Card = TypeVar("_Card", "ProductCard", "MediaCard")


def _unique_card_indexes(cards: list[_Card]) -> list[_Card]:
    # Seed 004 carousel card tables: "Unique index for each card (0-9)".
    duplicate = first_duplicate(card.card_index for card in cards)
    if duplicate is not None:
        raise rule_error(
            (duplicate, "card_index"),
            "card_index repeats an earlier card",
            cards[duplicate].card_index,
        )
    return cards


class ProductCardAction(WireModel):
    product_retailer_id: str = Field(min_length=1)
    catalog_id: str = Field(min_length=1)


class ProductCard(WireModel):
    card_index: int = Field(ge=0, le=9)
    type: Literal["product"] = "product"
    action: ProductCardAction


class ProductCarouselAction(WireModel):
    cards: list[ProductCard] = Field(min_length=1, max_length=10)

    @field_validator("cards")
    @classmethod
    def _unique_indexes(cls, cards: list[ProductCard]) -> list[ProductCard]:
        return _unique_card_indexes(cards)


class ProductCarouselInteractive(WireModel):
    """Product cards; seed 004 shows a carousel with body and action only."""

    TAG: ClassVar[str] = "carousel_product"
    type: Literal["carousel"] = "carousel"
    body: Body
    action: ProductCarouselAction


class CardMedia(WireModel):
    # Seed 004 'Interactive Media carousel action cards parameters' documents only
    # header.image.link / header.video.link for card headers.
    link: str = Field(min_length=1)


class CardImageHeader(WireModel):
    type: Literal["image"] = "image"
    image: CardMedia


class CardVideoHeader(WireModel):
    type: Literal["video"] = "video"
    video: CardMedia


class CardBody(WireModel):
    text: str = Field(min_length=1, max_length=160)

    @field_validator("text")
    @classmethod
    def _two_line_breaks(cls, text: str) -> str:
        # Seed 004: card body "Max 160 chars, and up to 2 line breaks".
        if text.count("\n") > 2:
            raise ValueError("a card body has at most 2 line breaks")
        return text


class MediaCard(WireModel):
    card_index: int = Field(ge=0, le=9)
    type: Literal["cta_url"] = "cta_url"
    header: Annotated[CardImageHeader | CardVideoHeader, Field(discriminator="type")]
    body: CardBody | None = None
    # The card table marks display_text and url optional; a CTA button needs both, as
    # the CTA URL table says, so they are required.
    action: CtaUrlAction


class MediaCarouselAction(WireModel):
    cards: list[MediaCard] = Field(min_length=1, max_length=10)

    @field_validator("cards")
    @classmethod
    def _unique_indexes_one_header_type(cls, cards: list[MediaCard]) -> list[MediaCard]:
        _unique_card_indexes(cards)
        # Seed 004: header.type "image" or "video" "(all cards must match)".
        first = cards[0].header.type
        for position, card in enumerate(cards):
            if card.header.type != first:
                raise rule_error(
                    (position, "header", "type"),
                    f"every card's header is {first!r}, like the first card's",
                    card.header.type,
                )
        return cards


class MediaCarouselInteractive(WireModel):
    """Image or video cards, each with a CTA URL button."""

    TAG: ClassVar[str] = "carousel_media"
    type: Literal["carousel"] = "carousel"
    body: Body
    action: MediaCarouselAction


# --- the interactive union --------------------------------------------------------------


def _carousel_tag(action: Any) -> str:
    cards = action.get("cards") if isinstance(action, dict) else None
    for card in cards if isinstance(cards, list) else []:
        if isinstance(card, dict) and (card.get("type") == "cta_url" or "header" in card):
            return MediaCarouselInteractive.TAG
    return ProductCarouselInteractive.TAG


def _interactive_tag(value: Any) -> str | None:
    """Which kind of interactive message ``value`` is (a dict on input, a model on output)."""
    if not isinstance(value, dict):
        return getattr(value, "TAG", None)
    kind = value.get("type")
    if kind == "carousel":
        return _carousel_tag(value.get("action"))
    return kind if isinstance(kind, str) else None


INTERACTIVE_TYPES = (
    "list, button, product, product_list, catalog_message, carousel, flow, cta_url, "
    "location_request_message or contact_request"
)

Interactive = Annotated[
    Annotated[ListInteractive, Tag(ListInteractive.TAG)]
    | Annotated[ButtonInteractive, Tag(ButtonInteractive.TAG)]
    | Annotated[ProductInteractive, Tag(ProductInteractive.TAG)]
    | Annotated[ProductListInteractive, Tag(ProductListInteractive.TAG)]
    | Annotated[CatalogInteractive, Tag(CatalogInteractive.TAG)]
    | Annotated[ProductCarouselInteractive, Tag(ProductCarouselInteractive.TAG)]
    | Annotated[MediaCarouselInteractive, Tag(MediaCarouselInteractive.TAG)]
    | Annotated[FlowInteractive, Tag(FlowInteractive.TAG)]
    | Annotated[CtaUrlInteractive, Tag(CtaUrlInteractive.TAG)]
    | Annotated[LocationRequestInteractive, Tag(LocationRequestInteractive.TAG)]
    | Annotated[ContactRequestInteractive, Tag(ContactRequestInteractive.TAG)],
    Discriminator(
        _interactive_tag,
        custom_error_type="interactive_type",
        custom_error_message=f"interactive.type must be {INTERACTIVE_TYPES}",
    ),
]


class InteractiveMessage(WireModel):
    type: Literal["interactive"] = "interactive"
    interactive: Interactive
