"""The thin server layer: a request with a bounded body reader, and responses.

A request comes from either of two server interfaces: ASGI (any ASGI server, and the
inspector's in-process loopback) or granian's RSGI, which ``capigate serve`` uses because it
hands the body over in one await and takes the response in one call, not three messages.
Kept close to the metal on purpose (no framework): the ingest paths are the hot ones.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from time import perf_counter, time_ns
from typing import Any, Protocol
from urllib.parse import parse_qsl

import msgspec
from granian.rsgi import ProtocolClosed  # type: ignore[attr-defined]  # re-exported from _granian, unlisted

from capigate.http.deadlines import is_cut_short, limited

__all__ = [
    "RETRY_AFTER",
    "BodyError",
    "Request",
    "Response",
    "RsgiProtocol",
    "RsgiScope",
    "json_response",
    "peer_address",
    "peer_host",
    "text_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encode = msgspec.json.Encoder().encode
DEFAULT_BODY_TIMEOUT_S = 30.0


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
        "_task",
        "body_read",
        "body_timeout_s",
        "client_ip",
        "headers",
        "headers_twice",
        "method",
        "path",
        "peer",
        "proto",
        "query",
        "receive",
        "received_at_ms",
        "repeated",
        "request_id",
        "rsgi_headers",
        "send",
        "started",
    )

    def __init__(
        self,
        request_id: str,
        method: str,
        path: str,
        headers: dict[str, str],
        query: dict[str, str],
        client_ip: str | None,
        *,
        receive: Receive | None = None,
        send: Send | None = None,
        proto: RsgiProtocol | None = None,
        repeated: frozenset[str] = frozenset(),
        peer: str = "",
    ) -> None:
        """``headers`` with lower-case names; ``receive`` and ``send`` for ASGI, ``proto`` for RSGI;
        ``repeated``: the query parameters given more than once (``query`` holds their last value);
        ``peer``: the connection's other end, "ip:port" (``client_ip`` may come from a proxy's header)."""
        self.started = perf_counter()  # names of this module's: compiled, a module's attribute is a lookup
        self.received_at_ms = time_ns() // 1_000_000
        self.request_id = request_id
        self.method, self.path, self.headers, self.query, self.client_ip = method, path, headers, query, client_ip
        self.receive, self.send, self.proto = receive, send, proto
        self.repeated = repeated
        self.peer = peer
        self._task: asyncio.Task[Any] | None = None
        self.rsgi_headers: Any = None  # granian's, which know the names of headers it gives no value of
        self.headers_twice: frozenset[str] = frozenset()  # the names given more than once
        self.body_timeout_s = DEFAULT_BODY_TIMEOUT_S  # the gateway sets [server] body_timeout_s
        self.body_read = False  # the whole body has been read (body())

    @classmethod
    def from_asgi(cls, scope: Scope, receive: Receive, send: Send, request_id: str) -> Request:
        raw_headers = scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        qs: bytes = scope.get("query_string", b"")
        query, repeated = _parse_query(qs.decode("latin-1")) if qs else ({}, frozenset[str]())
        client = scope.get("client")
        client_ip = client[0] if client else None
        request = Request(  # not cls(): compiled, a call of the class itself is a direct one
            request_id,
            scope["method"],
            scope["path"],
            headers,
            query,
            client_ip,
            receive=receive,
            send=send,
            repeated=repeated,
            peer=f"{client[0]}:{client[1]}" if client else "",
        )
        if len(headers) != len(raw_headers):  # a name given twice: the dict kept its last value
            request.headers_twice = _repeated(k.decode("latin-1").lower() for k, _ in raw_headers)
        return request

    @classmethod
    def from_rsgi(cls, scope: RsgiScope, proto: RsgiProtocol, request_id: str) -> Request:
        rsgi_headers = scope.headers
        pairs = rsgi_headers.items()  # every value of a name given twice, names lower-cased
        headers = dict(pairs)
        qs = scope.query_string
        query, repeated = _parse_query(qs) if qs else ({}, frozenset[str]())
        peer = scope.client  # "ip:port", "[v6]:port"
        client_ip = peer_host(peer) or None
        request = Request(
            request_id, scope.method, scope.path, headers, query, client_ip, proto=proto, repeated=repeated, peer=peer
        )
        request.rsgi_headers = rsgi_headers
        if len(headers) != len(pairs):  # told here, not by get_all on each header asked of
            request.headers_twice = _repeated(name for name, _ in pairs)
        return request

    def sent_unreadable(self, name: str) -> bool:
        """True when the request has a header ``name`` whose value granian gave no text of (bytes
        other than visible ASCII): ``headers`` lacks it, as if it were not sent."""
        return name not in self.headers and self.rsgi_headers is not None and name in self.rsgi_headers

    def sent_twice(self, name: str) -> bool:
        """True when the request has header ``name`` more than once (``headers`` keeps the last)."""
        return name in self.headers_twice

    def task(self) -> asyncio.Task[Any]:
        """The task answering this request (looked up once: its time limits need it)."""
        if self._task is None:
            task = asyncio.current_task()
            assert task is not None, "a request is answered inside a task"
            self._task = task
        return self._task

    @property
    def elapsed_ms(self) -> float:
        return (perf_counter() - self.started) * 1000.0

    async def answer(self, response: Response) -> None:
        if not self.body_read and self._sends_body():
            # Answered before its body was read (a 401, a 413 …): the server closes the
            # connection rather than read it, and says so, or a client that sent the body after
            # the head sends its next request into the closed connection (a CI run's reset).
            response.headers.append(("connection", "close"))
        if self.proto is not None:
            response.send_rsgi(self.proto)
        else:
            assert self.send is not None
            await response.send(self.send)

    def _sends_body(self) -> bool:
        declared = self.headers.get("content-length")
        return declared != "0" if declared is not None else "transfer-encoding" in self.headers

    async def body(self, limit: int) -> bytes:
        """The body, inflated if gzip-encoded; BodyError past ``limit`` bytes either way, and
        408 if it has not all arrived within ``body_timeout_s`` (a Content-Length that
        promises more than is sent, a client trickling its body)."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
        chunked: _GranianChunked | None = None
        if self.proto is not None and declared is not None and declared.isdigit():
            reading = self.proto()  # the server reads no more than the declared length
        elif self.proto is not None:
            chunked = _GranianChunked(self.proto, limit)
            reading = chunked.read()
        else:
            assert self.receive is not None
            reading = _asgi_body(self.receive, limit)
        try:
            body = await limited(reading, self.body_timeout_s, self.task(), cuttable=True)
        except ProtocolClosed:  # granian's, when the client shuts its side before Content-Length
            message = f"the connection closed before the body's {declared} bytes arrived; nothing was stored"
            raise BodyError(400, "body_incomplete", message) from None
        except TimeoutError:
            if is_cut_short(self.task().get_loop()):
                message = "the gateway is stopping and the body had not all arrived; nothing was stored: send it again"
            else:
                message = f"the body did not arrive within {self.body_timeout_s:g} s; nothing was stored"
            raise BodyError(408, "body_timeout", message) from None
        self.body_read = True
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):  # RFC 9110 8.4.1.3: x-gzip is gzip
            try:
                body = _gunzip(body, limit)
            except BodyError:
                if chunked is not None and chunked.ended_early:
                    raise BodyError(400, "body_incomplete", CHUNKS_ENDED_EARLY) from None
                raise
        elif encoding not in ("identity", ""):
            raise BodyError(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip or none"
            )
        if chunked is not None and chunked.ended_early and not _reads_as_json(body):
            raise BodyError(400, "body_incomplete", CHUNKS_ENDED_EARLY)
        return body


def peer_host(peer: str) -> str:
    """The address of an "ip:port" or "[v6]:port" peer, as ``getpeername`` gives it."""
    return peer.rpartition(":")[0].strip("[]")


def peer_address(peer: str) -> tuple[str, int] | None:
    """(address, port) of an "ip:port" or "[v6]:port" peer, as ``getpeername`` gives them;
    None without a port."""
    port = peer.rpartition(":")[2]
    return (peer_host(peer), int(port)) if port.isdigit() else None


def _repeated(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name for name, count in Counter(names).items() if count > 1)


def _parse_query(qs: str) -> tuple[dict[str, str], frozenset[str]]:
    # A parameter given empty is kept, as "": the admin API refuses an empty filter, which
    # read as none (``?source=`` listed every source's events); Axon's pixel_id is missing so.
    if "&" not in qs and "%" not in qs and "+" not in qs:  # one plain pair (?pixel_id=...): what
        name, _, value = qs.partition("=")  # parse_qsl answers, at a tenth of its cost
        return ({name: value} if name else {}), frozenset()
    pairs = parse_qsl(qs, keep_blank_values=True)
    query = dict(pairs)
    if len(query) == len(pairs):
        return query, frozenset()
    return query, _repeated(name for name, _ in pairs)


CHUNKS_ENDED_EARLY = (
    "the chunked body ended before its last chunk (the connection closed, or a chunk size was malformed); "
    "nothing was stored"
)


class _GranianChunked:
    """A chunked body from granian, which ends it with one empty chunk, and with two when it
    ended on an error of the transport (the client closed mid-body, a malformed chunk size) or
    with trailers: ``ended_early`` then. Told apart from trailers by the body, which an early
    end leaves unreadable (Request.body)."""

    __slots__ = ("ended_early", "limit", "proto")

    def __init__(self, proto: RsgiProtocol, limit: int) -> None:
        self.proto, self.limit, self.ended_early = proto, limit, False

    async def read(self) -> bytes:
        parts: list[bytes] = []
        size = empty = 0
        async for chunk in self.proto:  # iterated once: granian refuses a second __aiter__
            if not chunk:
                empty += 1
                continue
            size += len(chunk)
            if size > self.limit:
                raise BodyError(413, "body_too_large", f"the body exceeds the limit of {self.limit} bytes")
            parts.append(chunk)
        self.ended_early = empty > 1
        return b"".join(parts)


def _reads_as_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    except RecursionError:  # whole, but too deep: the handler says so
        return True
    return True


async def _asgi_body(receive: Receive, limit: int) -> bytes:
    """The body's chunks from ASGI ``receive`` joined; BodyError (413) as soon as they pass
    ``limit`` bytes. A loop, not ``async for``: the StopAsyncIteration ending an iterator
    costs a compiled function a traceback entry, 3.4 % of a W2 request's instructions."""
    parts: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Every member of the gzip stream inflated, at most ``limit`` bytes in all. RFC 1952 lets a
    stream hold several members one after another (``cat a.gz b.gz``), which ``gzip -d`` joins;
    bytes after the last one that are not a member are refused, not ignored (NUL padding aside)."""
    if not body:  # zlib reads no bytes as a stream cut before its header: "truncated" would mislead
        raise BodyError(400, "bad_gzip", _EMPTY_GZIP)
    parts: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise BodyError(400, "bad_gzip", _AFTER_GZIP if parts else _NOT_GZIP) from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise BodyError(413, "inflated_body_too_large", f"the gzip body inflates past the limit of {limit} bytes")
        if not inflater.eof:
            raise BodyError(400, "bad_gzip", _AFTER_GZIP if parts else "the gzip stream is truncated")
        parts.append(part)
        rest = inflater.unused_data
        if not rest.strip(b"\0"):
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if len(parts) == MAX_GZIP_MEMBERS:  # each costs a new inflater: a body of empty ones is ~50,000
            raise BodyError(400, "bad_gzip", f"the gzip stream holds more than {MAX_GZIP_MEMBERS} members")


MAX_GZIP_MEMBERS = 64
_NOT_GZIP = "Content-Encoding is gzip but the body is not a gzip stream"
_EMPTY_GZIP = "the body is empty: Content-Encoding says gzip but no bytes were sent"
_AFTER_GZIP = "the body holds bytes after its gzip stream that are not a gzip member"


# A 503's hint: the store is away; a client told nothing retries at once, or never.
RETRY_AFTER: tuple[str, str] = ("retry-after", "5")


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = [("content-type", content_type), *(headers or [])]

    def strip_body_for_head(self) -> None:
        """The answer to HEAD: the headers of the GET answer, its Content-Length included (RFC
        9110 9.3.2; a server left to count the empty body would say 0), and no body."""
        self.headers.append(("content-length", str(len(self.body))))
        self.body = b""

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
