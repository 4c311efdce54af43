"""The OpenAPI document of the HTTP API, built from the lifecycle registry.

``docs/generate.py`` writes it to ``docs/openapi.json``; the server serves it at
``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from .._lifecycles import LIFECYCLES, Outcome
from .._version import __version__
from ._args import MAX_INT

__all__ = ["openapi"]

_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_KEY = {
    "type": ["object", "null"],
    "additionalProperties": _STR,
    "description": "the resource's key fields (wire names) and their values",
}
_LIFECYCLE = {"type": "string", "enum": list(LIFECYCLES)}
_STATE = {"type": "string", "enum": sorted({s for lc in LIFECYCLES.values() for s in lc.states})}


def _resource_path(name: str) -> str:
    """``/resources/recording/{meetingId}/{sessionId}``: one lifecycle's status path."""
    fields = LIFECYCLES[name].definition.key_fields
    return f"/resources/{name}/" + "/".join(f"{{{f}}}" for f in fields)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def _page(item: str) -> dict[str, Any]:
    return _object(
        {
            "items": {"type": "array", "items": _ref(item)},
            "next": {**_NULLABLE_STR, "description": "the next page, if there may be one"},
        }
    )


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json_response("an error, named", _ref("Error"))
_LIMIT = _query(
    "limit", {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100}, "the page size"
)
_MEETING = _query("meetingId", _STR, "only this meeting")
_SESSION = _query("sessionId", _STR, "only this meeting session")
_READ_ERRORS = {"400": _ERROR, "401": _ERROR, "503": _ERROR}

_SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _STR}),
    "FeedResult": _object(
        {
            "seq": {"type": "integer", "minimum": 1},
            "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
            "lifecycle": {"type": ["string", "null"], "enum": [*LIFECYCLES, None]},
            "key": _KEY,
            "webhook_type": _NULLABLE_STR,
            "before": _NULLABLE_STR,
            "after": _NULLABLE_STR,
            "missing": {"type": "array", "items": _STR},
            "warnings": {"type": "array", "items": _STR},
            "reason": _NULLABLE_STR,
            "received_at": _TIME,
        }
    ),
    "HistoryEntry": _object(
        {
            "seq": {"type": "integer"},
            "webhook_type": _STR,
            "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
            "received_at": _TIME,
        }
    ),
    "ResourceStatus": _object(
        {
            "lifecycle": _LIFECYCLE,
            "key": _KEY,
            "state": _STATE,
            "entered_at": _TIME,
            "data": {"type": "object", "description": "the latest data of the current cycle"},
            "history": {"type": "array", "items": _ref("HistoryEntry")},
            "deadline": {**_STR, "description": "with overdue=true: the deadline it passed"},
            "seconds": {"type": "number", "description": "with overdue=true: its length"},
            "due_at": {**_TIME, "description": "with overdue=true: when it fell due"},
            "flagged": {
                "type": "boolean",
                "description": "with overdue=true: whether a sweep has flagged this visit "
                "(an overdue entry in /anomalies)",
            },
        },
        required=["lifecycle", "key", "state", "entered_at", "data"],
    ),
    "Change": _object(
        {
            "cursor": {"type": "integer", "minimum": 1, "description": "grows in commit order"},
            "seq": {"type": "integer", "minimum": 1},
            "outcome": {"type": "string", "enum": ["applied", "gap", "overdue"]},
            "lifecycle": _LIFECYCLE,
            "key": _KEY,
            "webhook_type": {**_NULLABLE_STR, "description": "null for an overdue flag"},
            "before": _STATE,
            "after": _STATE,
            "warnings": {"type": "array", "items": _STR},
            "at": _TIME,
            "data": {"type": "object", "description": "the resource's data after it"},
        }
    ),
    "ChangePage": _object(
        {
            "items": {"type": "array", "items": _ref("Change")},
            "next": {"type": "integer", "description": "the cursor to ask after next"},
        }
    ),
    "Gone": _object({"error": _STR, "oldest": {"type": "integer"}}),
    "Delivery": _object(
        {
            "id": {**_STR, "description": "its webhook-id"},
            "endpoint": _STR,
            "cursor": {"type": "integer"},
            "status": {"type": "string", "enum": ["failed", "pending", "delivered"]},
            "attempts": {"type": "integer"},
            "error": _NULLABLE_STR,
            "updated_at": _TIME,
            "message": {"type": "object", "description": "what was POSTed"},
        }
    ),
    "DeliveryList": _object({"items": {"type": "array", "items": _ref("Delivery")}}),
    "ResourcePage": _page("ResourceStatus"),
    "AnomalyPage": _page("FeedResult"),
    "Session": _object(
        {
            "sessionId": _STR,
            "meetingId": _NULLABLE_STR,
            "session": {"oneOf": [_ref("ResourceStatus"), {"type": "null"}]},
            "resources": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": _ref("ResourceStatus")},
            },
            "next": _NULLABLE_STR,
        }
    ),
    "Health": _object(
        {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "events": {"type": "integer"},
        },
        required=["status"],
    ),
}

_OFFSET = _query(
    "offset",
    {"type": "integer", "minimum": 0, "maximum": MAX_INT, "default": 0},
    "how many to skip",
)

_PATHS: dict[str, Any] = {
    "/webhooks": {
        "post": {
            "summary": "Receive one VideoSDK webhook",
            "description": "The raw body is verified against the videosdk-signature header, then "
            "stored and classified before the answer. Malformed payloads and "
            "unknown types are stored too and answered 200.",
            "security": [],
            "parameters": [
                {
                    "name": "videosdk-signature",
                    "in": "header",
                    "required": False,
                    "schema": _STR,
                    "description": "base64 RSA-SHA256 (PKCS#1 v1.5) of the raw body",
                }
            ],
            "requestBody": {
                "required": False,
                "description": "the webhook as VideoSDK sent it; "
                "any body within the size limit is stored, a bad one as malformed",
                "content": {"application/json": {"schema": {}}},
            },
            "responses": {
                "200": _json_response("stored and classified", _ref("FeedResult")),
                "401": _ERROR,
                "413": _ERROR,
                "503": _ERROR,
            },
        }
    },
    "/resources": {
        "get": {
            "summary": "Tracked resources, filtered and paged",
            "parameters": [
                _query("lifecycle", _LIFECYCLE, "only this lifecycle"),
                _MEETING,
                _SESSION,
                _query("state", _STR, "only resources in this state"),
                _query(
                    "overdue",
                    {"type": "string", "enum": ["true", "false"], "default": "false"},
                    "only the resources past their deadline now, the longest overdue first",
                ),
                _LIMIT,
                _OFFSET,
            ],
            "responses": {
                "200": _json_response("a page of resources", _ref("ResourcePage")),
                **_READ_ERRORS,
            },
        }
    },
    **{
        _resource_path(name): {
            "get": {
                "summary": f"One {name}'s status and history",
                "parameters": [
                    {"name": f, "in": "path", "required": True, "schema": _STR}
                    for f in lc.definition.key_fields
                ],
                "responses": {
                    "200": _json_response("the status", _ref("ResourceStatus")),
                    "404": _ERROR,
                    **_READ_ERRORS,
                },
            }
        }
        for name, lc in LIFECYCLES.items()
    },
    "/anomalies": {
        "get": {
            "summary": "Results that were not a clean applied, in feed order, paged",
            "parameters": [
                _query("lifecycle", _LIFECYCLE, "only this lifecycle"),
                _query(
                    "outcome",
                    {"type": "string", "enum": [o.value for o in Outcome]},
                    "only this outcome",
                ),
                _MEETING,
                _SESSION,
                _query(
                    "after",
                    {"type": "integer", "minimum": 0, "maximum": MAX_INT, "default": 0},
                    "only results after this seq",
                ),
                _LIMIT,
            ],
            "responses": {
                "200": _json_response("a page of anomalies", _ref("AnomalyPage")),
                **_READ_ERRORS,
            },
        }
    },
    **{
        path: {
            "get": {
                "summary": summary,
                "parameters": [
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "maximum": MAX_INT, "default": 0},
                        "only changes after this cursor"
                        + ("; the header Last-Event-ID wins over it" if stream else ""),
                    ),
                    *(
                        []
                        if stream
                        else [
                            _LIMIT,
                            _query(
                                "wait",
                                {"type": "number", "minimum": 0, "maximum": 60, "default": 0},
                                "seconds to hold the request while nothing is newer",
                            ),
                        ]
                    ),
                    _query("lifecycle", _LIFECYCLE, "only this lifecycle"),
                    _query("state", _STATE, "only changes into this state"),
                    _MEETING,
                    _SESSION,
                ],
                "responses": {
                    "200": (
                        {
                            "description": "Server-Sent Events: event change, id the cursor, "
                            "data a Change as JSON; event gone (data: error, oldest) when "
                            "what follows was pruned meanwhile",
                            "content": {"text/event-stream": {"schema": _STR}},
                        }
                        if stream
                        else _json_response("a page of changes", _ref("ChangePage"))
                    ),
                    "410": _json_response("changes after that cursor were pruned", _ref("Gone")),
                    **_READ_ERRORS,
                },
            }
        }
        for path, summary, stream in (
            ("/changes", "The change feed after a cursor, paged; a long poll with wait", False),
            ("/changes/stream", "The change feed as Server-Sent Events, resumable", True),
        )
    },
    "/deliveries": {
        "get": {
            "summary": "Forwarded changes given up on, asked to be sent again, or sent again",
            "parameters": [
                _query(
                    "status",
                    {"type": "string", "enum": ["failed", "pending", "delivered"]},
                    "only this status",
                ),
                _query("endpoint", _STR, "only this endpoint's URL"),
                _LIMIT,
            ],
            "responses": {
                "200": _json_response("the deliveries", _ref("DeliveryList")),
                **_READ_ERRORS,
            },
        }
    },
    "/deliveries/{id}/retry": {
        "post": {
            "summary": "Send a failed delivery again",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR}],
            "responses": {
                "202": _json_response("now pending", _ref("Delivery")),
                "404": _ERROR,
                **_READ_ERRORS,
            },
        }
    },
    "/sessions/{sessionId}": {
        "get": {
            "summary": "Everything in one meeting session, with its states",
            "parameters": [
                {"name": "sessionId", "in": "path", "required": True, "schema": _STR},
                _LIMIT,
                _OFFSET,
            ],
            "responses": {
                "200": _json_response("the session and a page of its resources", _ref("Session")),
                "404": _ERROR,
                **_READ_ERRORS,
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Whether the store answers",
            "security": [],
            "responses": {
                "200": _json_response("healthy", _ref("Health")),
                "503": _json_response("the store is unavailable", _ref("Health")),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition",
                    "content": {"text/plain": {"schema": _STR}},
                },
                "401": _ERROR,
                "503": _ERROR,
            },
        }
    },
}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``lifecycle serve``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lifecycle",
            "version": __version__,
            "description": "VideoSDK webhooks in, live lifecycle state out.",
        },
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
