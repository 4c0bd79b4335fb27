"""Reading a running gateway's events and request journal through its query API.

    with GatewayAdmin("http://localhost:8080", admin_token) as admin:
        for event in admin.follow_events(source="px_demo"):
            print(event.name, event.status)

``GET /api/events`` and ``/api/requests`` answer newest first, a page at a time; ``iter_*``
walks the pages, ``follow_*`` yields rows as they arrive, oldest first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
import msgspec

from capigate.client._base import USER_AGENT
from capigate.errors import HTTPStatusError, TransportError
from capigate.responses import ErrorBody, EventsPage, EventView, RequestsPage, RequestView

__all__ = ["GatewayAdmin"]

Row = TypeVar("Row", EventView, RequestView)
_decode_events = msgspec.json.Decoder(EventsPage).decode
_decode_requests = msgspec.json.Decoder(RequestsPage).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode
_MAX_PAGES_PER_POLL: Final = 20


class GatewayAdmin:
    """A client of capigate's admin query API (``Authorization: Bearer <admin token>``).

    Filters: ``source`` (pixel or app id), ``name``, ``status`` (event status, or request
    HTTP status), ``api`` (requests), ``test_tag`` (events), ``since``/``until`` (epoch ms or
    ISO 8601), ``limit`` (rows per page, 1..1000)."""

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"Bearer {admin_token}", "User-Agent": USER_AGENT},
        )

    def events(self, *, cursor: str | None = None, **filters: Any) -> EventsPage:
        """One page of events, newest first."""
        return _decode_events(self._get("/api/events", cursor, filters))

    def requests(self, *, cursor: str | None = None, **filters: Any) -> RequestsPage:
        """One page of the request journal, newest first."""
        return _decode_requests(self._get("/api/requests", cursor, filters))

    def iter_events(self, **filters: Any) -> Iterator[EventView]:
        """Every event matching, newest first, page after page."""
        return self._pages(lambda c: _events_of(self.events(cursor=c, **filters)))

    def iter_requests(self, **filters: Any) -> Iterator[RequestView]:
        return self._pages(lambda c: _requests_of(self.requests(cursor=c, **filters)))

    def follow_events(self, *, interval_s: float = 1.0, backlog: int = 0, **filters: Any) -> Iterator[EventView]:
        """Events as they arrive, oldest first, forever: the last ``backlog`` ones first,
        then a poll every ``interval_s`` seconds."""
        return _follow(lambda c, n: _events_of(self.events(cursor=c, limit=n, **filters)), interval_s, backlog)

    def follow_requests(self, *, interval_s: float = 1.0, backlog: int = 0, **filters: Any) -> Iterator[RequestView]:
        return _follow(lambda c, n: _requests_of(self.requests(cursor=c, limit=n, **filters)), interval_s, backlog)

    def _get(self, path: str, cursor: str | None, filters: dict[str, Any]) -> bytes:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        if cursor:
            params["cursor"] = cursor
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise TransportError(f"{self._http.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            try:
                error = _decode_error(response.content)
                detail = "; ".join([error.message, *(str(p) for p in error.problems)])
            except msgspec.DecodeError:
                detail = response.text[:200]
            raise HTTPStatusError(response.status_code, detail)
        return response.content

    @staticmethod
    def _pages(fetch: Callable[[str | None], tuple[list[Row], str | None]]) -> Iterator[Row]:
        cursor: str | None = None
        while True:
            rows, cursor = fetch(cursor)
            yield from rows
            if cursor is None:
                return

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _events_of(page: EventsPage) -> tuple[list[EventView], str | None]:
    return page.events, page.next


def _requests_of(page: RequestsPage) -> tuple[list[RequestView], str | None]:
    return page.requests, page.next


def _follow(
    fetch: Callable[[str | None, int], tuple[list[Row], str | None]], interval_s: float, backlog: int
) -> Iterator[Row]:
    """Rows newer than the newest seen, oldest first. Pages are newest first: read pages
    until one reaches a row already seen (at most _MAX_PAGES_PER_POLL a poll)."""
    rows, _ = fetch(None, max(1, min(backlog, 1000)))
    newest = max((r.id for r in rows), default=0)
    yield from reversed(rows[:backlog])
    while True:
        time.sleep(interval_s)
        fresh: list[Row] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES_PER_POLL):
            page, cursor = fetch(cursor, 200)
            fresh += [r for r in page if r.id > newest]
            if cursor is None or (page and page[-1].id <= newest):
                break
        if fresh:
            newest = max(r.id for r in fresh)
            yield from reversed(fresh)
