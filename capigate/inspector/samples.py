"""The "send a test event" loop: each configured source with the spec's example bodies, and
a request the gateway sends itself, in-process, with the source's key and a test tag.

The key stays on the server: the page names a source and a body, nothing more. The request
goes through the whole gateway (routing, checks, store, journal, metrics) like any other,
and shows up in the journal with ``X-Capigate-Test: inspector``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Literal
from urllib.parse import quote, urlencode

import msgspec

from capigate.__version__ import __version__
from capigate.config import Config
from capigate.http.asgi import Message, Receive, Scope, Send

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["TEST_TAG", "Example", "Exchange", "Loopback", "SourceInfo", "send_to_self", "sources", "target_api"]

TEST_TAG = "inspector"
USER_AGENT = f"capigate-inspector/{__version__}"

# The spec's examples, per Axon profile (the first is the one shown first).
_AXON_EXAMPLES = {
    "standard": ("axon_purchase.json",),
    "lead_gen": ("lead_gen_generate_lead.json", "lead_gen_page_view.json"),
    "lead_gen_restricted": ("restricted_generate_lead.json", "restricted_page_view.json"),
}


class Example(msgspec.Struct, kw_only=True):
    name: str  # the file, e.g. axon_purchase.json
    body: str  # pretty JSON, with a fresh event time and dedupe_id


class SourceInfo(msgspec.Struct, kw_only=True):
    """A configured source as the page sees it: never its keys."""

    id: str
    api: Literal["axon", "appsflyer"]
    profile: str | None  # the Axon profile
    relay: bool  # events of this source are relayed upstream
    examples: list[Example]


class Loopback(msgspec.Struct, kw_only=True):
    """What the gateway answered to the test event."""

    status: int
    content_type: str
    body: str
    warnings: str | None = None  # the X-Capigate-Warnings header


def sources(config: Config, now_ms: int | None = None) -> list[SourceInfo]:
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    out = [
        SourceInfo(
            id=p.pixel_id,
            api="axon",
            profile=p.profile,
            relay=p.relay is not None and p.relay.enabled,
            examples=[Example(name=n, body=_fresh_axon(n, now_ms)) for n in _AXON_EXAMPLES[p.profile]],
        )
        for p in config.axon.pixels
    ]
    out.extend(
        SourceInfo(
            id=a.app_id,
            api="appsflyer",
            profile=None,
            relay=a.relay is not None and a.relay.enabled,
            examples=[Example(name="appsflyer_purchase.json", body=_fresh_appsflyer(a.dedupe_key))],
        )
        for a in config.appsflyer.apps
    )
    return out


def _example(name: str) -> str:
    return resources.files("capigate.examples").joinpath(name).read_text(encoding="utf-8")


def _fresh_axon(name: str, now_ms: int) -> str:
    """The example as the spec gives it, but sent now and with a dedupe_id of its own, so
    that it is stored (not refused as a year old, not dropped as a duplicate)."""
    body = json.loads(_example(name))
    for event in body.get("events", []):
        event["event_time"] = now_ms
        event["dedupe_id"] = f"inspector-{uuid.uuid4().hex[:12]}"
    return json.dumps(body, indent=2, ensure_ascii=False)


def _fresh_appsflyer(dedupe_key: str | None) -> str:
    """The example as the spec gives it; for an app with a ``dedupe_key``, with a value of
    its own there, as the Axon example gets a dedupe_id (without, it is missing_dedupe_id)."""
    body = _example("appsflyer_purchase.json")
    if dedupe_key is None:
        return body
    event = json.loads(body)
    value = json.loads(event["eventValue"])
    value[dedupe_key] = f"inspector-{uuid.uuid4().hex[:12]}"
    event["eventValue"] = json.dumps(value, separators=(",", ":"))
    return json.dumps(event, ensure_ascii=False)


def _scope(method: str, path: str, query: str, headers: dict[str, str], client_ip: str | None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": (client_ip, 0) if client_ip else None,
        "server": None,
    }


async def send_to_self(
    app: ASGIApp, config: Config, source_id: str, body: bytes, client_ip: str | None, *, api: str | None = None
) -> Loopback | None:
    """POST ``body`` to the source's endpoint through ``app`` (the gateway's ASGI app);
    None if no such source is configured. ``api`` (axon, appsflyer) picks one of a pixel and
    an app of one id; None, the pixel if there is one."""
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": USER_AGENT,
        "x-capigate-test": TEST_TAG,
        "content-length": str(len(body)),
    }
    target = target_api(config, source_id, api)
    pixel = config.pixel(source_id) if target == "axon" else None
    app_conf = config.app(source_id) if target == "appsflyer" else None
    if pixel is not None:
        headers["authorization"] = pixel.api_key
        scope = _scope("POST", "/v1/event", urlencode({"pixel_id": pixel.pixel_id}), headers, client_ip)
    elif app_conf is not None:
        headers["authentication"] = app_conf.keys[0]
        scope = _scope("POST", "/inappevent/" + quote(app_conf.app_id, safe=""), "", headers, client_ip)
    else:
        return None
    exchange = Exchange(body)
    await app(scope, exchange.receive, exchange.send)
    return Loopback(
        status=exchange.status,
        content_type=exchange.headers.get("content-type", ""),
        body=b"".join(exchange.chunks).decode("utf-8", "replace"),
        warnings=exchange.headers.get("x-capigate-warnings"),
    )


def target_api(config: Config, source_id: str, api: str | None) -> Literal["axon", "appsflyer"] | None:
    """Which API a test event for ``source_id`` goes to: ``api`` (axon, appsflyer) picks one
    of a pixel and an app of one id; None, the pixel if there is one. None: no such source."""
    if api in (None, "axon") and config.pixel(source_id) is not None:
        return "axon"
    if api in (None, "appsflyer") and config.app(source_id) is not None:
        return "appsflyer"
    return None


class Exchange:
    """One in-process ASGI request: the body in, the response collected."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self.status = 500
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []

    async def receive(self) -> Message:
        body, self._body = self._body, None
        if body is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
