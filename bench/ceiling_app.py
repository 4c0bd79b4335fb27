"""The reference ("ceiling") apps: the least work an app can do per request, on each interface.

Both read the whole request body and answer 200 ``{}`` to any request, so the same granian
server, worker count and load generator measure what the stack costs before any gateway work.

- ``app``, ASGI: the ceiling the benchmark targets are defined against.
  Served with: ``granian --interface asgi bench.ceiling_app:app``.
- ``rsgi_app``, RSGI (granian's own protocol, which ``capigate serve`` uses): the like-for-like
  ceiling. Served with: ``granian --interface rsgi bench.ceiling_app:rsgi_app``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RSGIScope(Protocol):
    """The part of granian's RSGI scope (granian.rsgi.Scope) used here."""

    @property
    def proto(self) -> str: ...


class RSGIHTTPProtocol(Protocol):
    """The part of granian's RSGI HTTP protocol object (granian._granian.pyi) used here."""

    async def __call__(self) -> bytes: ...
    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...


_BODY = b"{}"
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
]
_RSGI_HEADERS = [("content-type", "application/json")]  # granian adds content-length


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body, as a real app must before answering
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


async def rsgi_app(scope: RSGIScope, proto: RSGIHTTPProtocol) -> None:
    """RSGI has no lifespan scope: granian calls this for each request (and websocket)."""
    if scope.proto != "http":
        return
    await proto()  # the whole body, as a real app must read it before answering
    proto.response_bytes(200, _RSGI_HEADERS, _BODY)
