"""The thin ASGI layer: a request with a bounded body reader, responses, and a router.

Kept close to the metal on purpose (no framework): the ingest paths are the hot ones.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

__all__ = ["BodyError", "Request", "Response", "json_response", "text_response"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encode = msgspec.json.Encoder().encode


class BodyError(Exception):
    """The body cannot be read: too large (413) or a broken gzip stream (400)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Request:
    __slots__ = (
        "client_ip",
        "headers",
        "method",
        "path",
        "query",
        "receive",
        "received_at_ms",
        "request_id",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, request_id: str) -> None:
        self.started = time.perf_counter()
        self.received_at_ms = time.time_ns() // 1_000_000
        self.request_id = request_id
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        qs: bytes = scope.get("query_string", b"")
        self.query: dict[str, str] = dict(parse_qsl(qs.decode("latin-1"))) if qs else {}
        client = scope.get("client")
        self.client_ip: str | None = client[0] if client else None

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    async def body(self, limit: int) -> bytes:
        """The body, inflated if gzip-encoded; BodyError past ``limit`` bytes either way."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            return _gunzip(body, limit)
        if encoding not in ("identity", ""):
            raise BodyError(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip or none"
            )
        return body


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise BodyError(400, "bad_gzip", "Content-Encoding is gzip but the body is not a gzip stream") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, "inflated_body_too_large", f"the gzip body inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise BodyError(400, "bad_gzip", "the gzip stream is truncated")
    return out


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes, content_type: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = [(b"content-type", content_type), *(headers or [])]

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(status: int, content: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(status, _encode(content), b"application/json", headers)


def text_response(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(status, text.encode(), b"text/plain; charset=utf-8", headers)
