"""``GET /openapi.json``: capigate's own API, with schemas generated from the wire Structs.

Every route of the one route list (capigate/gateway.py) is in the document: the ones
described here with their parameters and answers, any other with its method and path."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from capigate.__version__ import __version__
from capigate.axon.schema import AxonBatch
from capigate.events import MAX_TEST_TAG_CHARS
from capigate.http.api import EVENT_APIS
from capigate.responses import (
    Accepted,
    ErrorBody,
    EventDetail,
    EventsPage,
    OutboxPage,
    QualityReport,
    ReplayRequest,
    ReplayResult,
    RequestDetail,
    RequestsPage,
)

if TYPE_CHECKING:
    from capigate.http.routing import Route

__all__ = ["document"]

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Refused: every problem with its JSON path; nothing was stored",
        401: "Missing or wrong key",
        403: "A write with the inspector's session cookie but without its X-Capigate-Inspector header (CSRF guard)",
        413: "Body (or inflated gzip body) over the limit",
        415: "Unsupported Content-Encoding",
        429: "Too many wrong admin tokens from this client (with /login's): wait Retry-After seconds",
        503: "Store unavailable; nothing was acknowledged",
    }
    return {str(c): _json("ErrorBody", texts[c]) for c in codes}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": {"type": kind}}


_FILTERS = [
    _query("source", "pixel id or app id"),
    _query("since", "received at or after (epoch ms or ISO 8601)"),
    _query("until", "received before (epoch ms or ISO 8601)"),
    _query("cursor", "the `next` value of the previous page"),
    _query("limit", "1..1000, default 50", "integer"),
]


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The described API, and every route of ``routes`` the description leaves out."""
    described = _described()
    paths = {path: dict(operations) for path, operations in described["paths"].items()}
    for route in routes:
        paths.setdefault(route.path, {}).setdefault(route.method.lower(), _undescribed(route))
    return {**described, "paths": paths}


def _undescribed(route: Route) -> dict[str, Any]:
    params = [name.rstrip("}") for name in route.path.split("{")[1:]]
    operation: dict[str, Any] = {"summary": f"{route.method} {route.path}", "responses": {"200": {"description": "ok"}}}
    if params:
        operation["parameters"] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params
        ]
    return operation


@functools.cache
def _described() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [
            AxonBatch,
            Accepted,
            ErrorBody,
            EventsPage,
            RequestsPage,
            EventDetail,
            OutboxPage,
            ReplayRequest,
            ReplayResult,
            RequestDetail,
            QualityReport,
        ],
        ref_template=_REF,
    )
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "capigate", "version": __version__},
        "paths": {
            "/v1/event": {
                "post": {
                    "summary": "AppLovin Axon Conversions API: submit 1..100 events",
                    "parameters": [
                        {"name": "pixel_id", "in": "query", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "X-Capigate-Test",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": MAX_TEST_TAG_CHARS},
                            "description": "test tag: events are stored with it and never relayed",
                        },
                    ],
                    "security": [{"pixelKey": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("AxonBatch")}}},
                    "responses": {"200": _json("Accepted", "All events accepted"), **_errors(400, 401, 413, 415, 503)},
                }
            },
            "/inappevent/{app_id}": {
                "post": {
                    "summary": "AppsFlyer S2S in-app event (one event, JSON body of at most 1,024 bytes)",
                    "parameters": [{"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "security": [{"appsflyerKey": []}],
                    "responses": {
                        "200": {"description": "`OK` (text/plain), or Accepted as JSON with Accept: application/json"},
                        "400": {"description": "AppsFlyer's text, or ErrorBody as JSON with Accept: application/json"},
                        "401": {"description": "`Unauthorized`"},
                    },
                }
            },
            "/api/events": {
                "get": {
                    "summary": "Stored events, newest first",
                    "security": admin,
                    "parameters": [
                        *_FILTERS,
                        _query("api", "axon | appsflyer (a pixel and an app may share an id)"),
                        _query("name", "event name"),
                        _query("status", "stored | pending | delivered | dead"),
                        _query("test_tag", "test tag"),
                    ],
                    "responses": {"200": _json("EventsPage", "A page of events"), **_errors(400, 401, 429)},
                }
            },
            "/api/events/{id}": {
                "get": {
                    "summary": "One event with every relay attempt and the upstream's verbatim answer",
                    "security": admin,
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {
                        "200": _json("EventDetail", "The event and its attempts, oldest first"),
                        "404": _json("ErrorBody", "No event with this id"),
                        **_errors(401, 429),
                    },
                }
            },
            "/api/outbox": {
                "get": {
                    "summary": "The relay queue of each destination: pending, dead and delivered events",
                    "security": admin,
                    "responses": {"200": _json("OutboxPage", "One entry per destination"), **_errors(401, 429)},
                }
            },
            "/api/replay": {
                "post": {
                    "summary": "Queue dead-lettered events again (filters combine; none: all of them)",
                    "security": admin,
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("ReplayRequest")}},
                    },
                    "responses": {
                        "200": _json("ReplayResult", "How many were queued again"),
                        **_errors(400, 401, 403, 429),
                    },
                }
            },
            "/api/requests": {
                "get": {
                    "summary": "The request journal, newest first",
                    "security": admin,
                    "parameters": [
                        *_FILTERS,
                        _query("status", "an HTTP status (401) or a class (2xx, 4xx, 5xx)"),
                        _query("api", "axon | appsflyer | admin | inspector | capigate | unknown"),
                        _query("name", "an event name of the request"),
                        _query("dedupe_id", "a dedupe_id of the request"),
                        _query("transaction_id", "Axon data.transaction_id, AppsFlyer eventValue.af_order_id"),
                        _query("client_ip", "the client's address, IPv4 or IPv6"),
                        _query("test_tag", "test tag"),
                    ],
                    "responses": {"200": _json("RequestsPage", "A page of journal entries"), **_errors(400, 401, 429)},
                }
            },
            "/api/sources": {
                "get": {
                    "summary": "The configured sources (pixels, apps) with example events; never a key",
                    "security": admin,
                    "responses": {"200": {"description": "The sources"}, **_errors(401, 429)},
                }
            },
            "/api/stats": {
                "get": {
                    "summary": "Requests and events per source over time, unknown sources aggregated, relay depths",
                    "security": admin,
                    "parameters": [
                        _query("source", "pixel id or app id"),
                        _query("since", "from (epoch ms or ISO 8601), default an hour before until"),
                        _query("until", "to (epoch ms or ISO 8601), default now"),
                        _query(
                            "bucket",
                            "bucket width in ms (at least 1000, at most 500 buckets, at most the window)",
                            "integer",
                        ),
                    ],
                    "responses": {"200": {"description": "The buckets"}, **_errors(400, 401, 429)},
                }
            },
            "/api/test-event": {
                "post": {
                    "summary": "Send a test event through the gateway itself (the inspector's Send view)",
                    "security": admin,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "source": {"type": "string", "description": "a configured pixel or app id"},
                                        "body": {
                                            "type": "string",
                                            "description": "the event's JSON as a string (not an object), "
                                            "as the source's endpoint takes it",
                                        },
                                        "api": {
                                            "type": "string",
                                            "enum": list(EVENT_APIS),
                                            "description": "which of a pixel and an app of one id; "
                                            "left out, the pixel if there is one, else the app",
                                        },
                                    },
                                    "required": ["source", "body"],
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "The gateway's answer to the event"},
                        **_errors(400, 401, 403, 429),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {"200": {"description": "text/plain; version=0.0.4"}},
                }
            },
            "/login": {
                "post": {
                    "summary": 'Log in to the inspector with the admin token (form field `token`, or JSON {"token": ...}); sets a session cookie',
                    "responses": {
                        "303": {"description": "Logged in: to the inspector"},
                        "400": {"description": "No token in the body (or a JSON object naming it twice): not counted"},
                        "401": {"description": "Wrong token"},
                        "429": {"description": "Too many failed logins from this client"},
                    },
                }
            },
            "/api/requests/{request_id}": {
                "get": {
                    "summary": "One journal entry: a refused request's body (PII treated as at ingest), its events",
                    "security": admin,
                    "parameters": [
                        {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json("RequestDetail", "The entry, its kept body, its stored events"),
                        "404": _json("ErrorBody", "No request with this id (or no longer kept)"),
                        **_errors(401, 429),
                    },
                }
            },
            "/api/quality": {
                "get": {
                    "summary": "Will the events match? Match-key coverage, dedupe health and a verdict (docs/quality.md)",
                    "security": admin,
                    "parameters": [
                        _query("source", "pixel id or app id (default: all)"),
                        _query("api", "axon | appsflyer (default: both; a pixel and an app may share an id)"),
                        _query("name", "event name (default: all)"),
                        _query("since", "epoch ms or ISO 8601 (default: 24 hours ago); rounded down to the hour"),
                        _query("until", "epoch ms or ISO 8601 (default: now); rounded up to the hour"),
                    ],
                    "responses": {
                        "200": _json("QualityReport", "One group per source and name"),
                        **_errors(400, 401, 429),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {
                "get": {
                    "summary": "Store writable",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "pixelKey": {"type": "apiKey", "in": "header", "name": "Authorization"},
                "appsflyerKey": {"type": "apiKey", "in": "header", "name": "authentication"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
