"""Message templates as LINK lists them (seed 004 'List Templates', 'Get Template').

The seed gives the endpoints and refers to Meta's message-template reference for the
bodies, so templates are read in Meta's format: ``{"data": [template, ...], "paging":
...}`` for a list, one template for Get Template. A template is ``name``, ``language``,
``status``, ``category``, ``id`` and ``components``; what a send must fill is counted
from the components: a ``{{1}}`` or ``{{name}}`` placeholder in the header or body text
(a media or location header takes one parameter), dynamic URL and copy-code buttons
(one each, required), quick-reply and flow buttons (one each, optional).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dispatcher.providers.base import TemplateInfo

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})
_REQUIRED_BUTTONS = frozenset({"COPY_CODE"})
_OPTIONAL_BUTTONS = frozenset({"QUICK_REPLY", "FLOW"})


class _Component(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    format: str | None = None
    text: str | None = None
    buttons: list[dict[str, Any]] = Field(default_factory=list)


class MetaTemplate(BaseModel):
    """One template in Meta's format; fields the dispatcher does not use are kept."""

    model_config = ConfigDict(extra="allow")

    name: str
    language: str
    status: str
    category: str | None = None
    id: str | None = None
    components: list[_Component] = Field(default_factory=list)

    def info(self) -> TemplateInfo:
        header = body = required = allowed = 0
        carousel = False
        for component in self.components:
            kind = component.type.upper()
            if kind == "HEADER":
                media = (component.format or "").upper() in _MEDIA_HEADERS
                header = 1 if media else _placeholders(component.text)
            elif kind == "BODY":
                body = _placeholders(component.text)
            elif kind == "BUTTONS":
                for button in component.buttons:
                    button_type = str(button.get("type", "")).upper()
                    dynamic_url = button_type == "URL" and _placeholders(button.get("url")) > 0
                    if dynamic_url or button_type in _REQUIRED_BUTTONS:
                        required += 1
                        allowed += 1
                    elif button_type in _OPTIONAL_BUTTONS:
                        allowed += 1
            elif kind == "CAROUSEL":
                carousel = True
        return TemplateInfo(
            name=self.name,
            language=self.language,
            status=self.status,
            category=self.category,
            header_parameters=header,
            body_parameters=body,
            button_parameters_required=required,
            button_parameters_allowed=allowed,
            carousel=carousel,
            template_id=self.id,
        )


def _placeholders(text: object) -> int:
    return len(set(_PLACEHOLDER.findall(text))) if isinstance(text, str) else 0


def read_list(body: object) -> tuple[list[TemplateInfo], str | None]:
    """A List Templates page: its templates and the cursor of the next page, if any.
    A bare JSON list is taken too. Raises ValueError when it is neither."""
    if isinstance(body, list):
        items, paging = body, None
    elif isinstance(body, dict) and isinstance(body.get("data"), list):
        items, paging = body["data"], body.get("paging")
    else:
        raise ValueError("not a template list")
    after = None
    if isinstance(paging, dict) and paging.get("next"):
        cursors = paging.get("cursors")
        if isinstance(cursors, dict) and isinstance(cursors.get("after"), str):
            after = cursors["after"]
    return [read_one(item) for item in items], after


def read_one(body: object) -> TemplateInfo:
    """A Get Template answer (or one list entry); ValueError when it is not a template."""
    try:
        return MetaTemplate.model_validate(body).info()
    except ValidationError as exc:
        raise ValueError(f"not a template: {exc.errors()[0]['msg']}") from exc
