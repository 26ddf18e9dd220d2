"""LINK message bodies (seed 004 'Messages'), serialised exactly as documented.

This first set covers templates (text parameters, named parameters, media header,
buttons) and text messages; the rest of the catalogue follows the same pattern.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Seed 004 'Interactive message' and Meta's template limits.
TEXT_BODY_MAX_CHARS = 4096


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Media(_Body):
    """An image/video/document object: exactly one of ``id`` (uploaded) or ``link``."""

    id: str | None = None
    link: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Media:
        # Seed 004: "Only one of id or link is required (not both)".
        if (self.id is None) == (self.link is None):
            raise ValueError("give exactly one of 'id' or 'link'")
        return self


class TextParameter(_Body):
    type: Literal["text"] = "text"
    text: str = Field(min_length=1)
    parameter_name: str | None = Field(default=None, alias="parameterName")


class PayloadParameter(_Body):
    type: Literal["payload"] = "payload"
    payload: str


class ImageParameter(_Body):
    type: Literal["image"] = "image"
    image: Media


class VideoParameter(_Body):
    type: Literal["video"] = "video"
    video: Media


class DocumentParameter(_Body):
    type: Literal["document"] = "document"
    document: Media


HeaderParameter = Annotated[
    TextParameter | ImageParameter | VideoParameter | DocumentParameter,
    Field(discriminator="type"),
]


class HeaderComponent(_Body):
    type: Literal["header"] = "header"
    parameters: list[HeaderParameter] = Field(min_length=1, max_length=1)


class BodyComponent(_Body):
    type: Literal["body"] = "body"
    parameters: list[TextParameter] = Field(min_length=1)


class ButtonComponent(_Body):
    type: Literal["button"] = "button"
    sub_type: Literal["quickReply", "url"] = Field(alias="subType")
    index: int = Field(ge=0, le=9)
    parameters: list[TextParameter | PayloadParameter] = Field(min_length=1)


Component = Annotated[
    HeaderComponent | BodyComponent | ButtonComponent, Field(discriminator="type")
]


class Language(_Body):
    code: str = Field(min_length=2)


class Template(_Body):
    name: str = Field(min_length=1)
    language: Language
    components: list[Component] = Field(default_factory=list)


class TemplateMessage(_Body):
    type: Literal["template"] = "template"
    template: Template


class Text(_Body):
    body: str = Field(min_length=1, max_length=TEXT_BODY_MAX_CHARS)


class TextMessage(_Body):
    type: Literal["text"] = "text"
    preview_url: bool | None = Field(default=None, alias="previewUrl")
    text: Text


Message = Annotated[TemplateMessage | TextMessage, Field(discriminator="type")]
