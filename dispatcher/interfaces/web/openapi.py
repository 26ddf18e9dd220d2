"""The REST API's OpenAPI 3.1 document (``GET /api/openapi.json``).

Written by hand next to the routes (``api.py``) rather than generated from them: the
routes are plain Starlette, and the document is the contract batch jobs and the CI's
schemathesis run hold the API to, every status each route can answer included. The
request bodies' schemas come from the pydantic models that validate them, so the two
cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel

from dispatcher.interfaces import actions

_REF = "#/components/schemas/{model}"
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


_ERRORS = {
    "400": _error("malformed request (a path id that is no number, a body that is no JSON)"),
    "401": _error("no API key, or an unknown or revoked one"),
    "403": _error("the key's scope does not allow it (a read key asking to change something)"),
    "429": _error("too many requests without a valid key from this address (20 a second)"),
    "422": _error(
        "the content is not valid: detail.problems lists field and message (for a "
        "campaign, the field paths of `dispatcher validate`)"
    ),
}
_NOT_FOUND = {"404": _error("no such campaign or schedule")}
_CONFLICT = {"409": _error("the campaign's state does not allow it, or it repeats a recent one")}
_TOO_LARGE = {"413": _error(f"over {actions.MAX_UPLOAD_BYTES // (1024 * 1024)} MiB or files")}
_UNAVAILABLE = {"503": _error("the broker or the database cannot take it now")}


def _ok(schema: dict[str, Any], description: str = "done", status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {_JSON: {"schema": schema}}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "example": 1,
    }


_PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": actions.MAX_LIST}, "at most"),
    _query("offset", {"type": "integer", "minimum": 0}, "skip this many"),
]
_READ: list[dict[str, list[str]]] = [{"apiKey": []}]
_SEND: list[dict[str, list[str]]] = [{"apiKey": []}]
_CAMPAIGN = [_path_id("campaign_id")]
_FILES_BODY = {
    "required": True,
    "description": "the campaign folder's files (the spec in field `spec` or as "
    "campaign.yaml, recipients CSVs, media), or one zip of the folder",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "string", "format": "binary"},
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
            }
        },
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _campaign_action(summary: str, result: dict[str, Any], action: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": action,
            "tags": ["campaigns"],
            "security": _SEND,
            "parameters": _CAMPAIGN,
            "responses": _ok(result) | _ERRORS | _NOT_FOUND | _CONFLICT | _UNAVAILABLE,
        }
    }


def _schemas() -> dict[str, Any]:
    from dispatcher.interfaces.web import api

    models: list[type[BaseModel]] = [api.SuppressionsAdd, api.SuppressionsRemove]
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    problem = {
        "type": "object",
        "required": ["field", "message"],
        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
    }
    status: dict[str, Any] = {
        "type": "object",
        "description": "`dispatcher status ID --json`'s document (one campaign); "
        "`forecast` for a scheduled or previewed one",
        "required": ["campaign_id", "name", "state"],
        "properties": {
            "campaign_id": {"type": "integer"},
            "name": {"type": "string"},
            "state": {"type": "string"},
            "messages": {"type": "integer"},
            "eta_seconds": {"type": ["number", "null"]},
            "forecast": {"type": "object"},
        },
    }
    return found | {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "detail": {
                    "description": "for 422: {problems: [{field, message}]}",
                },
            },
        },
        "Problem": problem,
        "CampaignStatus": status,
        "CampaignList": {
            "type": "object",
            "required": ["campaigns", "limit", "offset"],
            "properties": {
                "campaigns": {"type": "array", "items": _ref("CampaignStatus")},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        },
        "Submitted": {
            "type": "object",
            "required": ["campaign_id", "state", "problems"],
            "properties": {
                "campaign_id": {"type": "integer"},
                "state": {
                    "type": "string",
                    "description": "draft (queued), scheduled, previewed (a dry run), "
                    "failed (a dry run that could not prepare it: error says why)",
                },
                "problems": {"type": "array", "items": _ref("Problem"), "maxItems": 0},
                "forecast": {"type": ["object", "null"]},
                "notes": {"type": "array", "items": {"type": "string"}},
                "error": {"type": ["string", "null"]},
            },
        },
        "Resumed": {
            "type": "object",
            "required": ["campaign_id", "batches_queued", "canary_waits", "queued"],
            "properties": {
                "campaign_id": {"type": "integer"},
                "batches_queued": {"type": "integer"},
                "canary_waits": {"type": "boolean"},
                "queued": {"type": "boolean", "description": "false: no broker (no REDIS_URL)"},
            },
        },
        "Changed": {
            "type": "object",
            "required": ["campaign_id", "state"],
            "properties": {
                "campaign_id": {"type": "integer"},
                "state": {"type": "string"},
                "never_sent": {"type": "integer"},
            },
        },
        "Suppression": {
            "type": "object",
            "required": ["identifier", "reason", "created_at"],
            "properties": {
                "identifier": {"type": "string"},
                "reason": {"type": "string"},
                "created_at": {"type": "string"},
            },
        },
        "SuppressionList": {
            "type": "object",
            "required": ["suppressions"],
            "properties": {
                "suppressions": {"type": "array", "items": _ref("Suppression")},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        },
        "SuppressionsChanged": {
            "type": "object",
            "required": ["rejected"],
            "properties": {
                "added": {"type": "integer"},
                "removed": {"type": "integer"},
                "rejected": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": ["integer", "null"]},
                            "identifier": {"type": ["string", "null"]},
                            "reason": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Schedule": {
            "type": "object",
            "required": ["id", "path", "cron", "timezone", "enabled"],
            "properties": {
                "id": {"type": "integer"},
                "path": {"type": "string"},
                "cron": {"type": "string"},
                "timezone": {"type": "string"},
                "enabled": {"type": "boolean"},
                "next_run_at": {"type": ["string", "null"]},
                "last_campaign_id": {"type": ["integer", "null"]},
                "last_error": {"type": ["string", "null"]},
            },
        },
        "ScheduleList": {
            "type": "object",
            "required": ["schedules"],
            "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
        },
    }


@functools.cache
def _built() -> dict[str, Any]:
    csv_ok = {
        "200": {
            "description": "CSV, one line per recipient (numbers whole: the export)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }
    schedule_form = {
        "required": True,
        "description": "the campaign folder's files (or one zip) and the fields cron and "
        "timezone (default UTC)",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["cron"],
                    "properties": {
                        "cron": {"type": "string"},
                        "timezone": {"type": "string"},
                        "spec": {"type": "string", "format": "binary"},
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                }
            }
        },
    }
    campaign = "/campaigns/{campaign_id}"
    paths: dict[str, Any] = {
        "/campaigns": {
            "get": {
                "summary": "The latest campaigns, newest first, with their progress",
                "operationId": "listCampaigns",
                "tags": ["campaigns"],
                "security": _READ,
                "parameters": _PAGE,
                "responses": _ok(_ref("CampaignList")) | _ERRORS,
            },
            "post": {
                "summary": "Submit a campaign (validated, then queued, scheduled, or with "
                "dry_run previewed with its forecast)",
                "operationId": "submitCampaign",
                "tags": ["campaigns"],
                "security": _SEND,
                "parameters": [
                    _query("dry_run", {"type": "boolean"}, "prepare without sending"),
                    _query("again", {"type": "boolean"}, "send although sent recently"),
                ],
                "requestBody": _FILES_BODY,
                "responses": _ok(_ref("Submitted"), "registered", "201")
                | _ERRORS
                | _CONFLICT
                | _TOO_LARGE
                | _UNAVAILABLE,
            },
        },
        campaign: {
            "get": {
                "summary": "One campaign's status (`dispatcher status ID --json`)",
                "operationId": "campaignStatus",
                "tags": ["campaigns"],
                "security": _READ,
                "parameters": _CAMPAIGN,
                "responses": _ok(_ref("CampaignStatus")) | _ERRORS | _NOT_FOUND,
            }
        },
        f"{campaign}/start": {
            "post": {
                "summary": "Send a previewed campaign for real (its files submitted again; "
                "the preview is deleted)",
                "operationId": "startCampaign",
                "tags": ["campaigns"],
                "security": _SEND,
                "parameters": [
                    *_CAMPAIGN,
                    _query("again", {"type": "boolean"}, "send although sent recently"),
                ],
                "responses": _ok(_ref("Submitted"), "registered", "201")
                | _ERRORS
                | _NOT_FOUND
                | _CONFLICT
                | _UNAVAILABLE,
            }
        },
        f"{campaign}/pause": _campaign_action(
            "Stop sending (every worker, within a second)", _ref("Changed"), "pauseCampaign"
        ),
        f"{campaign}/resume": _campaign_action(
            "Go on sending from where it stopped", _ref("Resumed"), "resumeCampaign"
        ),
        f"{campaign}/cancel": _campaign_action(
            "Stop for good (never_sent: people who will not be sent)",
            _ref("Changed"),
            "cancelCampaign",
        ),
        f"{campaign}/report.csv": {
            "get": {
                "summary": "Per-recipient outcomes (`dispatcher report ID`)",
                "operationId": "campaignReport",
                "tags": ["campaigns"],
                "security": _READ,
                "parameters": _CAMPAIGN,
                "responses": csv_ok | _ERRORS | _NOT_FOUND,
            }
        },
        f"{campaign}/rejects.csv": {
            "get": {
                "summary": "The rows it could not use, with line and reason (404 until "
                "preparation wrote them)",
                "operationId": "campaignRejects",
                "tags": ["campaigns"],
                "security": _READ,
                "parameters": _CAMPAIGN,
                "responses": csv_ok | _ERRORS | _NOT_FOUND,
            }
        },
        "/suppressions": {
            "get": {
                "summary": "The opt-out list, oldest first",
                "operationId": "listSuppressions",
                "tags": ["suppressions"],
                "security": _READ,
                "parameters": [
                    _query(
                        "limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "at most"
                    ),
                    _PAGE[1],
                ],
                "responses": _ok(_ref("SuppressionList")) | _ERRORS,
            },
            "post": {
                "summary": "Add identifiers to the opt-out list",
                "operationId": "addSuppressions",
                "tags": ["suppressions"],
                "security": _SEND,
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": _ref("SuppressionsAdd")}},
                },
                "responses": _ok(_ref("SuppressionsChanged")) | _ERRORS | _TOO_LARGE,
            },
            "delete": {
                "summary": "Take identifiers off the opt-out list",
                "operationId": "removeSuppressions",
                "tags": ["suppressions"],
                "security": _SEND,
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": _ref("SuppressionsRemove")}},
                },
                "responses": _ok(_ref("SuppressionsChanged")) | _ERRORS | _TOO_LARGE,
            },
        },
        "/schedules": {
            "get": {
                "summary": "Recurring campaigns",
                "operationId": "listSchedules",
                "tags": ["schedules"],
                "security": _READ,
                "responses": _ok(_ref("ScheduleList")) | _ERRORS,
            },
            "post": {
                "summary": "A recurring campaign: its files sent again at every cron time",
                "operationId": "addSchedule",
                "tags": ["schedules"],
                "security": _SEND,
                "requestBody": schedule_form,
                "responses": _ok(_ref("Schedule"), "scheduled", "201")
                | _ERRORS
                | _TOO_LARGE
                | _UNAVAILABLE,
            },
        },
        "/schedules/{schedule_id}": {
            "get": {
                "summary": "One recurring campaign",
                "operationId": "showSchedule",
                "tags": ["schedules"],
                "security": _READ,
                "parameters": [_path_id("schedule_id")],
                "responses": _ok(_ref("Schedule")) | _ERRORS | _NOT_FOUND,
            },
            "delete": {
                "summary": "Stop a recurring campaign (campaigns it started stay)",
                "operationId": "removeSchedule",
                "tags": ["schedules"],
                "security": _SEND,
                "parameters": [_path_id("schedule_id")],
                "responses": _ok(
                    {
                        "type": "object",
                        "required": ["removed"],
                        "properties": {"removed": {"type": "integer"}},
                    }
                )
                | _ERRORS
                | _NOT_FOUND,
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dispatcher API",
            "version": "1",
            "description": "Bulk WhatsApp campaigns: submit, follow, control, report. "
            "Every call needs an API key (`dispatcher api-keys create NAME --scope "
            "send|read`) as a bearer token; errors are {error, detail}.",
        },
        "servers": [{"url": "/api"}],
        "security": _READ,
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key, wcd_...",
                }
            },
        },
    }


def document() -> dict[str, Any]:
    """The document (a copy: callers may change theirs)."""
    return copy.deepcopy(_built())
