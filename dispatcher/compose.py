"""Turn a campaign's message spec plus one recipient's values into a LINK message.

Recipients whose composed messages are identical can share one request's
``destinations``; ``content_key`` is what groups them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from dispatcher.campaign import CampaignSpec, TemplateMessageSpec, TextMessageSpec
from dispatcher.messages import (
    BodyComponent,
    ButtonComponent,
    DocumentParameter,
    HeaderComponent,
    ImageParameter,
    Language,
    Media,
    PayloadParameter,
    Template,
    TemplateMessage,
    Text,
    TextMessage,
    TextParameter,
    VideoParameter,
)
from dispatcher.render import render


def compose(spec: CampaignSpec, values: Mapping[str, str], media_id: str | None) -> dict[str, Any]:
    """The wire form of the campaign message for one recipient.

    ``media_id`` is the uploaded id of the header file; URLs pass through as ``link``.
    Raises ``render.MissingValue`` when the row lacks a value the message needs.
    """
    message = spec.message
    if isinstance(message, TextMessageSpec):
        text = TextMessage(
            text=Text(body=render(message.text, values)),
            previewUrl=message.preview_url or None,
        )
        return text.to_wire()
    return _template(message, values, media_id).to_wire()


def _template(
    message: TemplateMessageSpec, values: Mapping[str, str], media_id: str | None
) -> TemplateMessage:
    spec = message.template
    components: list[HeaderComponent | BodyComponent | ButtonComponent] = []
    header = spec.header
    if header is not None:
        if header.text:
            components.append(
                HeaderComponent(parameters=[TextParameter(text=render(header.text, values))])
            )
        else:
            ref = header.media_ref or ""
            media = Media(
                id=None if ref.startswith(("http://", "https://")) else media_id,
                link=ref if ref.startswith(("http://", "https://")) else None,
                filename=header.filename if header.media_kind == "document" else None,
            )
            parameter: ImageParameter | VideoParameter | DocumentParameter
            if header.media_kind == "video":
                parameter = VideoParameter(video=media)
            elif header.media_kind == "document":
                parameter = DocumentParameter(document=media)
            else:
                parameter = ImageParameter(image=media)
            components.append(HeaderComponent(parameters=[parameter]))
    if spec.body:
        if isinstance(spec.body, dict):
            parameters = [
                TextParameter(text=render(text, values), parameterName=name)
                for name, text in spec.body.items()
            ]
        else:
            parameters = [TextParameter(text=render(text, values)) for text in spec.body]
        components.append(BodyComponent(parameters=parameters))
    for button in spec.buttons:
        button_parameter: TextParameter | PayloadParameter = (
            TextParameter(text=render(button.text or "", values))
            if button.sub_type == "url"
            else PayloadParameter(payload=render(button.payload or "", values))
        )
        components.append(
            ButtonComponent(
                subType=button.sub_type, index=button.index, parameters=[button_parameter]
            )
        )
    return TemplateMessage(
        template=Template(
            name=spec.name, language=Language(code=spec.language), components=components
        )
    )


def content_key(message: Mapping[str, Any]) -> str:
    """A stable digest of a composed message, for grouping identical content."""
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
