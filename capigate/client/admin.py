"""Reading a running gateway's events and request journal through its query API.

    with GatewayAdmin("http://localhost:8080", admin_token) as admin:
        for event in admin.follow_events(source="px_demo"):
            print(event.name, event.status)

    async with AsyncGatewayAdmin("http://localhost:8080", admin_token) as admin:
        async for event in admin.iter_events(source="px_demo"):
            print(event.name, event.status)

``GET /api/events`` and ``/api/requests`` answer newest first, a page at a time; ``iter_*``
walks the pages, ``follow_*`` yields rows as they arrive, oldest first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
import msgspec

from capigate.client._base import USER_AGENT
from capigate.client._http import checked_admin_url
from capigate.errors import HTTPStatusError, TransportError
from capigate.responses import ErrorBody, EventsPage, EventView, QualityReport, RequestsPage, RequestView

__all__ = ["AsyncGatewayAdmin", "GatewayAdmin"]

Row = TypeVar("Row", EventView, RequestView)
Page = tuple[list[Row], str | None]
_decode_events = msgspec.json.Decoder(EventsPage).decode
_decode_requests = msgspec.json.Decoder(RequestsPage).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode
_decode_quality = msgspec.json.Decoder(QualityReport).decode
_FIRST_PAGE: Final = 200  # a poll's first page: most polls need no other
_PAGE: Final = 1000  # the API's largest, for the pages of a burst


def _client_options(admin_token: str, timeout: float | httpx.Timeout) -> dict[str, Any]:
    return {"timeout": timeout, "headers": {"Authorization": f"Bearer {admin_token}", "User-Agent": USER_AGENT}}


def _params(cursor: str | None, filters: dict[str, Any]) -> dict[str, str]:
    params = {k: str(v) for k, v in filters.items() if v is not None}
    if cursor:
        params["cursor"] = cursor
    return params


def _no_answer(url: str, exc: httpx.TransportError) -> TransportError:
    return TransportError(f"GET {url}: {type(exc).__name__}: {exc}", url=url)


def _content(response: httpx.Response) -> bytes:
    """The body of a 200, else HTTPStatusError with the gateway's message and problems."""
    if response.status_code == 200:
        return response.content
    url = str(response.request.url)
    try:
        error = _decode_error(response.content)
    except msgspec.DecodeError:
        text = response.text.strip()[:200] or response.reason_phrase
        raise HTTPStatusError(response.status_code, text, url=url, body=response.content) from None
    raise HTTPStatusError(response.status_code, error.message, url=url, body=response.content, problems=error.problems)


def _events_of(content: bytes) -> Page[EventView]:
    page = _decode_events(content)
    return page.events, page.next


def _requests_of(content: bytes) -> Page[RequestView]:
    page = _decode_requests(content)
    return page.requests, page.next


def _rewound(first_page: list[Row], newest: int) -> int:
    """The newest id seen, or less if the gateway's newest row now is older: its store was
    restored from a backup, or emptied, and numbers new rows from there again."""
    return min(newest, first_page[0].id if first_page else 0)


def _reached(page: list[Row], cursor: str | None, newest: int) -> bool:
    """Whether a poll can stop: no more pages, or this one reaches a row already seen."""
    return cursor is None or bool(page and page[-1].id <= newest)


class GatewayAdmin:
    """A client of capigate's admin query API (``Authorization: Bearer <admin token>``).

    Filters: ``source`` (pixel or app id), ``name``, ``status`` (event status, or request
    HTTP status), ``api`` (requests), ``test_tag`` (events), ``since``/``until`` (epoch ms or
    ISO 8601), ``limit`` (rows per page, 1..1000). ``timeout`` is httpx's (seconds, or an
    ``httpx.Timeout``). Errors: ``TransportError`` (no answer) and ``HTTPStatusError``; a
    ``base_url`` that is no gateway's base URL (no ``http://``, or ``…/api/events``): ValueError."""

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=checked_admin_url(base_url), transport=transport, **_client_options(admin_token, timeout)
        )

    def events(self, *, cursor: str | None = None, **filters: Any) -> EventsPage:
        """One page of events, newest first."""
        return _decode_events(self._get("/api/events", cursor, filters))

    def requests(self, *, cursor: str | None = None, **filters: Any) -> RequestsPage:
        """One page of the request journal, newest first."""
        return _decode_requests(self._get("/api/requests", cursor, filters))

    def quality(self, **filters: Any) -> QualityReport:
        """Will the events match? ``source``, ``name``, ``since``, ``until`` (default the last
        24 hours): identifier coverage, dedupe health and a verdict per source and event name."""
        return _decode_quality(self._get("/api/quality", None, filters))

    def iter_events(self, **filters: Any) -> Iterator[EventView]:
        """Every event matching, newest first, page after page."""
        return self._pages(lambda c: _events_of(self._get("/api/events", c, filters)))

    def iter_requests(self, **filters: Any) -> Iterator[RequestView]:
        return self._pages(lambda c: _requests_of(self._get("/api/requests", c, filters)))

    def follow_events(
        self, *, interval_s: float = 1.0, backlog: int = 0, on_gap: OnGap | None = None, **filters: Any
    ) -> Iterator[EventView]:
        """Events as they arrive, oldest first, forever: the last ``backlog`` ones first,
        then a poll every ``interval_s`` seconds. A poll the gateway does not answer (it
        restarts, its store is away: no answer or a 5xx) is tried again at the next, as
        ``tail -f`` waits, ``on_gap`` told of it; another error (a wrong token) ends it."""
        fetch = lambda c, n: _events_of(self._get("/api/events", c, {**filters, "limit": n}))  # noqa: E731
        return _follow(fetch, interval_s, backlog, on_gap)

    def follow_requests(
        self, *, interval_s: float = 1.0, backlog: int = 0, on_gap: OnGap | None = None, **filters: Any
    ) -> Iterator[RequestView]:
        fetch = lambda c, n: _requests_of(self._get("/api/requests", c, {**filters, "limit": n}))  # noqa: E731
        return _follow(fetch, interval_s, backlog, on_gap)

    def _get(self, path: str, cursor: str | None, filters: dict[str, Any]) -> bytes:
        try:
            response = self._http.get(path, params=_params(cursor, filters))
        except httpx.TransportError as exc:
            raise _no_answer(f"{self._http.base_url}{path}", exc) from exc
        return _content(response)

    @staticmethod
    def _pages(fetch: Callable[[str | None], Page[Row]]) -> Iterator[Row]:
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


class AsyncGatewayAdmin:
    """The async twin of GatewayAdmin: same arguments and methods; ``await`` the pages,
    ``async for`` over ``iter_*`` and ``follow_*``."""

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=checked_admin_url(base_url), transport=transport, **_client_options(admin_token, timeout)
        )

    async def events(self, *, cursor: str | None = None, **filters: Any) -> EventsPage:
        """One page of events, newest first."""
        return _decode_events(await self._get("/api/events", cursor, filters))

    async def requests(self, *, cursor: str | None = None, **filters: Any) -> RequestsPage:
        """One page of the request journal, newest first."""
        return _decode_requests(await self._get("/api/requests", cursor, filters))

    def iter_events(self, **filters: Any) -> AsyncIterator[EventView]:
        """Every event matching, newest first, page after page."""

        async def fetch(cursor: str | None) -> Page[EventView]:
            return _events_of(await self._get("/api/events", cursor, filters))

        return self._pages(fetch)

    def iter_requests(self, **filters: Any) -> AsyncIterator[RequestView]:
        async def fetch(cursor: str | None) -> Page[RequestView]:
            return _requests_of(await self._get("/api/requests", cursor, filters))

        return self._pages(fetch)

    def follow_events(
        self, *, interval_s: float = 1.0, backlog: int = 0, on_gap: OnGap | None = None, **filters: Any
    ) -> AsyncIterator[EventView]:
        """Events as they arrive, oldest first, until cancelled (as GatewayAdmin's)."""

        async def fetch(cursor: str | None, limit: int) -> Page[EventView]:
            return _events_of(await self._get("/api/events", cursor, {**filters, "limit": limit}))

        return _follow_async(fetch, interval_s, backlog, on_gap)

    def follow_requests(
        self, *, interval_s: float = 1.0, backlog: int = 0, on_gap: OnGap | None = None, **filters: Any
    ) -> AsyncIterator[RequestView]:
        async def fetch(cursor: str | None, limit: int) -> Page[RequestView]:
            return _requests_of(await self._get("/api/requests", cursor, {**filters, "limit": limit}))

        return _follow_async(fetch, interval_s, backlog, on_gap)

    async def _get(self, path: str, cursor: str | None, filters: dict[str, Any]) -> bytes:
        try:
            response = await self._http.get(path, params=_params(cursor, filters))
        except httpx.TransportError as exc:
            raise _no_answer(f"{self._http.base_url}{path}", exc) from exc
        return _content(response)

    @staticmethod
    async def _pages(fetch: Callable[[str | None], Awaitable[Page[Row]]]) -> AsyncIterator[Row]:
        cursor: str | None = None
        while True:
            rows, cursor = await fetch(cursor)
            for row in rows:
                yield row
            if cursor is None:
                return

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


OnGap = Callable[[TransportError], None]


def _gap(error: TransportError, on_gap: OnGap | None) -> None:
    """A poll that failed: raised again unless the next may not meet it (no answer, or a 5xx:
    a restart, the store away), which ``on_gap`` is told of."""
    if isinstance(error, HTTPStatusError) and error.status_code < 500:
        raise error
    if on_gap is not None:
        on_gap(error)


class _Mark:
    """The newest id a follow has yielded: what the next poll reads past."""

    __slots__ = ("id",)

    def __init__(self, first: int) -> None:
        self.id = first

    def past(self, page: list[Row]) -> list[Row]:
        """``page``'s rows past the mark, oldest first; the mark moves to the newest of them."""
        rows = [r for r in reversed(page) if r.id > self.id]
        if rows:
            self.id = rows[-1].id
        return rows


def _follow(
    fetch: Callable[[str | None, int], Page[Row]], interval_s: float, backlog: int, on_gap: OnGap | None = None
) -> Iterator[Row]:
    """Rows newer than the newest seen, oldest first, every one of them (_poll)."""
    rows, _ = fetch(None, max(1, min(backlog, 1000)))
    mark = _Mark(max((r.id for r in rows), default=0))
    yield from reversed(rows[:backlog])
    while True:
        time.sleep(interval_s)
        try:
            yield from _poll(fetch, mark)
        except TransportError as error:
            _gap(error, on_gap)  # the next poll goes on from the last row yielded


def _poll(fetch: Callable[[str | None, int], Page[Row]], mark: _Mark) -> Iterator[Row]:
    """The rows past ``mark``, oldest first. Pages come newest first: they are read down to
    one that reaches the mark, keeping only their cursors, then read again from the bottom
    up. A poll read at most 20 pages of 200 and dropped the rest, silently (a trial's burst:
    9,400 of 35,600 events shown)."""
    first, cursor = fetch(None, _FIRST_PAGE)
    mark.id = _rewound(first, mark.id)
    below: list[str] = []  # the cursors of the pages under the first, top down
    bottom = first
    while not _reached(bottom, cursor, mark.id):
        assert cursor is not None  # _reached: a page without a next one reaches
        below.append(cursor)
        bottom, cursor = fetch(cursor, _PAGE)
    if below:
        yield from mark.past(bottom)
        for page_cursor in reversed(below[:-1]):
            page, _ = fetch(page_cursor, _PAGE)
            yield from mark.past(page)
    yield from mark.past(first)


async def _follow_async(
    fetch: Callable[[str | None, int], Awaitable[Page[Row]]], interval_s: float, backlog: int, on_gap: OnGap | None
) -> AsyncIterator[Row]:
    """As ``_follow``, awaiting."""
    rows, _ = await fetch(None, max(1, min(backlog, 1000)))
    mark = _Mark(max((r.id for r in rows), default=0))
    for row in reversed(rows[:backlog]):
        yield row
    while True:
        await asyncio.sleep(interval_s)
        try:
            async for row in _poll_async(fetch, mark):
                yield row
        except TransportError as error:
            _gap(error, on_gap)


async def _poll_async(fetch: Callable[[str | None, int], Awaitable[Page[Row]]], mark: _Mark) -> AsyncIterator[Row]:
    """As ``_poll``, awaiting."""
    first, cursor = await fetch(None, _FIRST_PAGE)
    mark.id = _rewound(first, mark.id)
    below: list[str] = []
    bottom = first
    while not _reached(bottom, cursor, mark.id):
        assert cursor is not None
        below.append(cursor)
        bottom, cursor = await fetch(cursor, _PAGE)
    if below:
        for row in mark.past(bottom):
            yield row
        for page_cursor in reversed(below[:-1]):
            page, _ = await fetch(page_cursor, _PAGE)
            for row in mark.past(page):
                yield row
    for row in mark.past(first):
        yield row
