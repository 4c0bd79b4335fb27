"""The inspector's routes, merged into the gateway's routing table by ``capigate.http.app``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from capigate.http.asgi import Request, Response
from capigate.http.journal import Outcome
from capigate.http.state import Gateway
from capigate.inspector import endpoints, pages

__all__ = ["ROUTES", "UNJOURNALED"]

Handler = Callable[[Request, Gateway, Outcome], Awaitable[Response]]

ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/"): pages.get_page,
    ("POST", "/login"): pages.post_login,
    ("POST", "/logout"): pages.post_logout,
    **{("GET", path): pages.get_asset for path in pages.ASSETS},
    ("GET", "/api/sources"): endpoints.get_sources,
    ("GET", "/api/stats"): endpoints.get_stats,
    ("POST", "/api/test-event"): endpoints.post_test_event,
}
# The page and its reads are not the traffic the journal is for; the test events it sends
# are journaled as the requests to the ingest endpoints that they are.
UNJOURNALED = frozenset(path for _, path in ROUTES)
