"""Media objects and the media messages: image, audio, video, document, sticker.

Every media object names its file one way: ``id`` (uploaded through ``POST /media``)
or ``link`` (hosted), never both (seed 004 'Image message' and the other media
messages: "Only one of id or link is required (not both)").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dispatcher.messages.base import WireModel, check_http_link, rule_error


class OneSource(WireModel):
    """Base of every media object: exactly one of ``id`` or ``link``."""

    id: str | None = Field(default=None, min_length=1)
    link: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> OneSource:
        if self.id is None and self.link is None:
            raise rule_error(("id",), "give 'id' (uploaded media) or 'link' (hosted media)")
        if self.id is not None and self.link is not None:
            raise rule_error(("link",), "give either 'id' or 'link', not both", self.link)
        return self


class _HostedOrUploaded(OneSource):
    """A media object of a message or template: a link must be an http(s) URL."""

    @field_validator("link")
    @classmethod
    def _http_link(cls, link: str | None) -> str | None:
        return check_http_link(link)


class Media(_HostedOrUploaded):
    """A template header file (seed 004 'Image/Video/Document parameter').

    It "follows the same format as" the media message but without a caption;
    ``filename`` applies to documents only (the image and video parameters refuse it).
    """

    filename: str | None = Field(default=None, min_length=1)


class ImageMedia(_HostedOrUploaded):
    caption: str | None = None


class AudioMedia(_HostedOrUploaded):
    # Seed 004 'Audio message': voice notes must be Ogg/OPUS; false or omitted = plain audio.
    voice: bool | None = None


class VideoMedia(_HostedOrUploaded):
    caption: str | None = None


class DocumentMedia(_HostedOrUploaded):
    caption: str | None = None
    filename: str | None = None


class StickerMedia(_HostedOrUploaded):
    pass


class ImageMessage(WireModel):
    type: Literal["image"] = "image"
    image: ImageMedia


class AudioMessage(WireModel):
    type: Literal["audio"] = "audio"
    audio: AudioMedia


class VideoMessage(WireModel):
    type: Literal["video"] = "video"
    video: VideoMedia


class DocumentMessage(WireModel):
    type: Literal["document"] = "document"
    document: DocumentMedia


class StickerMessage(WireModel):
    type: Literal["sticker"] = "sticker"
    sticker: StickerMedia
