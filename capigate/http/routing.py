"""Routes as objects, answered in one place (after starlette's ``routing.py``).

A ``Route`` knows its method, its path, its handler, whether its requests are journaled, and
its metric label, which is the path itself: a path ending in ``{name}`` matches every path
with that prefix (``/inappevent/{app_id}``), and keeps the metric labels bounded. The
``Router`` finds the route of a request, or answers 404, or 405 with ``Allow``. HEAD is
answered wherever GET is, by the GET handler: the application sends its headers, with the
Content-Length of its body, and no body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from capigate.http.asgi import Request, Response, json_response
from capigate.http.outcome import Outcome
from capigate.http.state import Gateway
from capigate.personal import shown_path
from capigate.responses import ErrorBody

__all__ = ["NOT_FOUND", "OTHER_ENDPOINT", "Handler", "Route", "Router"]

Handler = Callable[[Request, Gateway, Outcome], Awaitable[Response]]

OTHER_ENDPOINT = "other"  # the metric label of every path that no route serves


class Route:
    __slots__ = ("handler", "journaled", "method", "path", "prefix")

    def __init__(self, method: str, path: str, handler: Handler, *, journaled: bool = True) -> None:
        head, brace, _ = path.partition("{")
        self.method = method
        self.path = path
        self.handler = handler
        self.journaled = journaled  # False: operators' and the inspector's reads, not the traffic
        self.prefix = head if brace else None

    @property
    def metric(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Route({self.method!r}, {self.path!r}, {self.handler.__name__})"


async def _not_found(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(404, ErrorBody(error="not_found", message=f"no endpoint at {shown_path(request.path)}"))


def _slashed_not_found(path: str, methods: list[str]) -> Handler:
    """A known path with a '/' after it (``POST /v1/event/``): named, as the AppsFlyer side
    names one after its app id ("no endpoint at /v1/event/" said nothing more, a trial)."""
    message = f"drop the trailing '/': {' or '.join(methods)} {path} is the endpoint"

    async def slashed_not_found(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
        shown = shown_path(request.path)
        return json_response(404, ErrorBody(error="not_found", message=f"no endpoint at {shown}: {message}"))

    return slashed_not_found


def _method_not_allowed(allowed: list[str]) -> Handler:
    headers = [("allow", ", ".join(allowed))]

    async def method_not_allowed(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
        message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        return json_response(405, ErrorBody(error="method_not_allowed", message=message), headers)

    return method_not_allowed


NOT_FOUND = Route("*", OTHER_ENDPOINT, _not_found)


def _heads(routes: tuple[Route, ...]) -> list[Route]:
    """A HEAD route for each GET route that has none (RFC 9110 9.3.2)."""
    explicit = {r.path for r in routes if r.method == "HEAD"}
    return [
        Route("HEAD", r.path, r.handler, journaled=r.journaled)
        for r in routes
        if r.method == "GET" and r.path not in explicit
    ]


class Router:
    """Every route of the gateway. ``match`` never fails: a path no route serves gets
    ``NOT_FOUND``; a known path with another method gets a route that answers 405, journaled
    and counted like the routes of that path."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        served = [*self.routes, *_heads(self.routes)]
        self._exact = {(r.method, r.path): r for r in served if r.prefix is None}
        by_path: dict[str, list[Route]] = {}
        for route in served:
            by_path.setdefault(route.path, []).append(route)
        duplicates = [str(rs[0].path) for rs in by_path.values() if len({r.method for r in rs}) < len(rs)]
        if duplicates:
            raise ValueError(f"two routes for one method and path: {duplicates}")
        self._refusals = {
            path: Route("*", path, _method_not_allowed(sorted(r.method for r in rs)), journaled=rs[0].journaled)
            for path, rs in by_path.items()
        }
        methods: dict[str, list[str]] = {}
        for route in self.routes:
            if route.prefix is None and route.path != "/":
                methods.setdefault(route.path, []).append(route.method)
        self._slashed = {
            path + "/": Route("*", OTHER_ENDPOINT, _slashed_not_found(path, sorted(ms))) for path, ms in methods.items()
        }
        self._prefixed = [(r.prefix, r) for r in served if r.prefix is not None]
        self._prefix_paths = {r.prefix: r.path for r in self.routes if r.prefix is not None}

    def match(self, method: str, path: str) -> Route:
        route = self._exact.get((method, path))
        if route is not None:
            return route
        for prefix, candidate in self._prefixed:
            if candidate.method == method and path.startswith(prefix):
                return candidate
        template = path if path in self._refusals else self._template(path)
        if template is None:
            return self._slashed.get(path.rstrip("/") + "/", NOT_FOUND) if path.endswith("/") else NOT_FOUND
        return self._refusals[template]

    def _template(self, path: str) -> str | None:
        for prefix, template in self._prefix_paths.items():
            if path.startswith(prefix):
                return template
        return None
