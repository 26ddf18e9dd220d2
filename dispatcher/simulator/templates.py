"""The sender's message templates: served by List Templates / Get Template (seed 004,
in Meta's template format), and the failures Meta reports for a send that does not
match them.

Seed 004 is silent on these codes; Meta's Cloud API error reference names them:
132000 "Number of parameters does not match the expected number of params", 132001
"Template does not exist" (the name, in that language, or not approved), 132015
"Template is paused", 132016 "Template is disabled"; 131047 "Re-engagement message"
(more than 24 hours since the person last wrote: seed 004 '24 hour customer care
window'). The simulator reports them as LINK reports Meta's errors: 112403 with the
code in the description.

The default list holds the templates the project's example campaigns, tests and
benchmarks send; ``SIMULATOR_TEMPLATES`` (JSON) replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dispatcher.simulator.codes import Status

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})


def _template(
    name: str,
    language: str,
    body: str,
    *,
    header: str | None = None,
    buttons: list[dict[str, str]] | None = None,
    category: str = "MARKETING",
    status: str = "APPROVED",
    carousel: bool = False,
) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    if header is not None:
        components.append({"type": "HEADER", "format": header})
    components.append({"type": "BODY", "text": body})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    if carousel:
        components.append({"type": "CAROUSEL", "cards": []})
    return {"name": name, "language": language, "status": status, "category": category,
            "components": components}  # fmt: skip


def default_templates() -> list[dict[str, Any]]:
    """The templates of the example campaigns (campaigns/), the tests and benchmarks."""
    quick_reply = {"type": "QUICK_REPLY", "text": "OK"}
    return [
        _template("spring_sale", "en", "Spring sale at {{1}}: use code {{2}}", header="IMAGE"),
        _template("winter_carousel", "en", "{{1}}", carousel=True),
        _template(
            "appointment_reminder",
            "en",
            "Hi {{1}}, see you at {{2}}.",
            buttons=[
                {"type": "QUICK_REPLY", "text": "Confirm"},
                {
                    "type": "URL",
                    "text": "Manage booking",
                    "url": "https://example.com/booking/{{1}}",
                },
            ],
        ),
        _template("order_ready", "en_US", "Hi {{first_name}}, order {{order_number}} is ready."),
        _template("hello", "en", "Hello {{1}}!"),
        _template("hello_world", "en_US", "Hello world"),
        _template("welcome", "en", "Welcome, {{1}}!"),
        _template("bench_notice", "en", "Notice for {{1}}", header="IMAGE"),
        _template("bench_text_notice", "en", "Notice for {{1}}"),
        _template(
            "login_code",
            "en",
            "{{1}} is your verification code.",
            buttons=[
                {
                    "type": "URL",
                    "text": "Copy code",
                    "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code={{1}}",
                }
            ],
            category="AUTHENTICATION",
        ),
        _template("promo", "en", "Our offer of the week", buttons=[quick_reply]),
    ]


@dataclass(frozen=True, slots=True)
class Expected:
    """What a listed template takes."""

    status: str
    header: int
    body: int
    buttons_required: int
    buttons_allowed: int
    carousel: bool


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """What a template message gives (``validation``)."""

    name: str
    language: str
    header: int
    body: int
    buttons: int
    carousel: bool


def _count(text: object) -> int:
    return len(set(_PLACEHOLDER.findall(text))) if isinstance(text, str) else 0


def expected(template: dict[str, Any]) -> Expected:
    header = body = required = allowed = 0
    carousel = False
    for component in template.get("components") or []:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            media = str(component.get("format", "")).upper() in _MEDIA_HEADERS
            header = 1 if media else _count(component.get("text"))
        elif kind == "BODY":
            body = _count(component.get("text"))
        elif kind == "BUTTONS":
            for button in component.get("buttons") or []:
                kind_of = str(button.get("type", "")).upper()
                if kind_of == "COPY_CODE" or (kind_of == "URL" and _count(button.get("url"))):
                    required += 1
                    allowed += 1
                elif kind_of in ("QUICK_REPLY", "FLOW"):
                    allowed += 1
        elif kind == "CAROUSEL":
            carousel = True
    return Expected(str(template.get("status", "")).upper(), header, body, required, allowed,
                    carousel)  # fmt: skip


UNKNOWN_TEMPLATE = "(#132001) Template name does not exist in the translation"
PARAMETER_MISMATCH = "(#132000) Number of parameters does not match the expected number of params"
OUTSIDE_CARE_WINDOW = Status(
    112403,
    "(#131047) Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer "
    "last replied to this number.",
)


class TemplateBook:
    """The configured templates by (name, language), each with an id."""

    def __init__(self, templates: list[dict[str, Any]]) -> None:
        self.listed: list[dict[str, Any]] = []
        self._by_key: dict[tuple[str, str], Expected] = {}
        self._categories: dict[tuple[str, str], str] = {}
        for index, template in enumerate(templates):
            entry = {"id": str(10**15 + index), **template}
            self.listed.append(entry)
            key = (str(entry["name"]), str(entry["language"]))
            self._by_key[key] = expected(entry)
            self._categories[key] = str(entry.get("category") or "MARKETING").lower()

    def set_status(self, name: str, language: str | None, status: str) -> list[dict[str, Any]]:
        """Give the templates of ``name`` (in ``language``, or every language) a new
        status, as Meta pauses or disables a template; later sends of it fail as Meta
        fails them (132015, 132016). Returns the entries whose status changed."""
        changed = []
        for entry in self.listed:
            if entry["name"] != name or (language is not None and entry["language"] != language):
                continue
            if entry.get("status") == status:
                continue
            entry["status"] = status
            self._by_key[(name, str(entry["language"]))] = expected(entry)
            changed.append(entry)
        return changed

    def names(self, name: str, language: str | None) -> bool:
        """Whether any template is listed under ``name`` (in ``language``, if given)."""
        return any(
            t["name"] == name and (language is None or t["language"] == language)
            for t in self.listed
        )

    def category(self, use: TemplateUse) -> str | None:
        """The template's category, as a DLR's ``pricingCategory`` names it."""
        return self._categories.get((use.name, use.language))

    def by_id(self, template_id: str) -> dict[str, Any] | None:
        return next((t for t in self.listed if t["id"] == template_id), None)

    def failure(self, use: TemplateUse) -> Status | None:
        """Meta's failure for this use of a template, or None when it matches."""
        found = self._by_key.get((use.name, use.language))
        if found is None or found.status not in ("APPROVED", "PAUSED", "DISABLED"):
            return Status(112403, UNKNOWN_TEMPLATE, f"template {use.name!r} ({use.language}) "
                          "does not exist or is not approved")  # fmt: skip
        if found.status == "PAUSED":
            return Status(112403, "(#132015) Template is paused", "Template is paused")
        if found.status == "DISABLED":
            return Status(112403, "(#132016) Template is disabled", "Template is disabled")
        mismatch = use.body != found.body
        if not (found.carousel or use.carousel):
            mismatch = mismatch or use.header != found.header
            mismatch = (
                mismatch or not found.buttons_required <= use.buttons <= found.buttons_allowed
            )
        if mismatch:
            return Status(112403, PARAMETER_MISMATCH, f"template {use.name!r} takes "
                          f"{found.header}/{found.body} header/body parameters")  # fmt: skip
        return None
