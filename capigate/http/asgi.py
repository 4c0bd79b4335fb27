"""The thin server layer: a request with a bounded body reader, and responses.

A request comes from either of two server interfaces: ASGI (any ASGI server, and the
inspector's in-process loopback) or granian's RSGI, which ``capigate serve`` uses because it
hands the body over in one await and takes the response in one call, not three messages.
Kept close to the metal on purpose (no framework): the ingest paths are the hot ones.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

import msgspec

__all__ = ["BodyError", "Request", "Response", "RsgiProtocol", "RsgiScope", "json_response", "text_response"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encode = msgspec.json.Encoder().encode


class RsgiScope(Protocol):
    """What capigate reads of granian's RSGI scope."""

    proto: str
    method: str
    path: str
    query_string: str
    client: str

    @property
    def headers(self) -> Any: ...


class RsgiProtocol(Protocol):
    """What capigate uses of granian's RSGI HTTP protocol object."""

    def __call__(self) -> Awaitable[bytes]: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...


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
        "proto",
        "query",
        "receive",
        "received_at_ms",
        "request_id",
        "send",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        self.started = time.perf_counter()
        self.received_at_ms = time.time_ns() // 1_000_000
        self.request_id = request_id
        self.receive: Receive | None = receive
        self.send: Send | None = send
        self.proto: RsgiProtocol | None = None
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        qs: bytes = scope.get("query_string", b"")
        self.query: dict[str, str] = dict(parse_qsl(qs.decode("latin-1"))) if qs else {}
        client = scope.get("client")
        self.client_ip: str | None = client[0] if client else None

    @classmethod
    def from_rsgi(cls, scope: RsgiScope, proto: RsgiProtocol, request_id: str) -> Request:
        request = cls.__new__(cls)
        request.started = time.perf_counter()
        request.received_at_ms = time.time_ns() // 1_000_000
        request.request_id = request_id
        request.receive, request.send, request.proto = None, None, proto
        request.method, request.path = scope.method, scope.path
        request.headers = dict(scope.headers.items())  # granian gives the names lower-cased
        qs = scope.query_string
        request.query = dict(parse_qsl(qs)) if qs else {}
        request.client_ip = scope.client.rpartition(":")[0].strip("[]") or None
        return request

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    async def answer(self, response: Response) -> None:
        if self.proto is not None:
            response.send_rsgi(self.proto)
        else:
            assert self.send is not None
            await response.send(self.send)

    async def body(self, limit: int) -> bytes:
        """The body, inflated if gzip-encoded; BodyError past ``limit`` bytes either way."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
        if self.proto is None:
            body = await self._asgi_body(limit)
        elif declared is not None and declared.isdigit():
            body = await self.proto()  # the server reads no more than the declared length
        else:
            body = await self._rsgi_stream(self.proto, limit)
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            return _gunzip(body, limit)
        if encoding not in ("identity", ""):
            raise BodyError(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip or none"
            )
        return body

    async def _asgi_body(self, limit: int) -> bytes:
        assert self.receive is not None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _rsgi_stream(proto: RsgiProtocol, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in proto:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large(limit: int) -> BodyError:
    return BodyError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")


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
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = [("content-type", content_type), *(headers or [])]

    async def send(self, send: Send) -> None:
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    def send_rsgi(self, proto: RsgiProtocol) -> None:
        proto.response_bytes(self.status, self.headers, self.body)


def json_response(status: int, content: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, _encode(content), "application/json", headers)


def text_response(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, text.encode(), "text/plain; charset=utf-8", headers)
