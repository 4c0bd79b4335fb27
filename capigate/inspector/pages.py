"""The inspector's HTML: a login form, one page shell, and its script and stylesheet.

Server-rendered shell, a little JavaScript (``static/inspector.js``, no library, no build
step, nothing fetched at run time) that reads the admin API and draws the views. Strict
Content-Security-Policy: scripts and styles from this origin only, nothing inline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from functools import cache
from importlib import resources
from string import Template
from urllib.parse import parse_qs

from capigate.__version__ import __version__
from capigate.errors import Problem
from capigate.http.asgi import BodyError, Request, Response
from capigate.http.outcome import Outcome
from capigate.http.session import clear_cookie, end_session, has_session, start_session
from capigate.http.state import Gateway
from capigate.unreadable import media_type

__all__ = ["ASSETS", "get_asset", "get_login", "get_page", "post_login", "post_logout"]

log = logging.getLogger("capigate.inspector")

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HTML_HEADERS = [
    ("content-security-policy", _CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
]
ASSETS = {
    "/inspector/inspector.js": "text/javascript; charset=utf-8",
    "/inspector/login.js": "text/javascript; charset=utf-8",
    "/inspector/inspector.css": "text/css",
}


@cache
def _file(name: str) -> bytes:
    return resources.files("capigate.inspector").joinpath(name).read_bytes()


@cache
def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(ASSETS):
        digest.update(_file("static/" + path.rsplit("/", 1)[1]))
    return digest.hexdigest()[:12]


def _html(status: int, template: str, extra: list[tuple[str, str]] | None = None, **values: str) -> Response:
    text = Template(_file(f"templates/{template}").decode()).substitute(
        version=__version__, assets=_asset_version(), **values
    )
    return Response(status, text.encode(), "text/html; charset=utf-8", [*_HTML_HEADERS, *(extra or [])])


def _login_page(status: int, error: str) -> Response:
    return _html(status, "login.html", error=error)


async def get_page(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "inspector"
    token = gateway.config.server.admin_token
    if not await has_session(request.method, request.headers, gateway.store, token):
        return _login_page(200, "")
    return _html(200, "inspector.html")


async def get_login(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """/login typed in a browser, or reloaded after a refused login: the page, which shows the
    form to one logged out (it answered 405 in JSON, a trial)."""
    outcome.api = "inspector"
    return Response(303, b"", "text/plain; charset=utf-8", [("location", "/"), *_HTML_HEADERS])


async def post_login(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """Journaled, and logged when refused: the guessed token never is (nor the body)."""
    outcome.api = "inspector"
    client = request.client_ip
    wait_s = gateway.logins.retry_after_s(client)
    if wait_s:
        outcome.problems = [Problem("", "too_many_logins", f"too many wrong tokens; retry in {wait_s} s")]
        log.warning("inspector login from %s refused: too many wrong tokens, retry in %d s", client, wait_s)
        page = _login_page(429, f'<p class="error" role="alert">Too many wrong tokens: wait {wait_s} s.</p>')
        page.headers.append(("retry-after", str(wait_s)))
        return page
    try:
        body = await request.body(4096)
    except BodyError:
        return _login_page(413, '<p class="error">That is not an admin token.</p>')
    token, refusal = _login_token(body, media_type(request.headers.get("content-type")) == "application/json")
    if token is None:  # no guess at a token: not a failed login (a trial's JSON was counted as one)
        code = "missing_admin_token" if refusal is _NO_TOKEN else "malformed_json"
        outcome.problems = [Problem("token" if refusal is _NO_TOKEN else "", code, refusal)]
        return _login_page(400, f'<p class="error" role="alert">{refusal}.</p>')
    expected = gateway.config.server.admin_token
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        gateway.logins.failed(client)
        outcome.problems = [Problem("token", "wrong_admin_token", "the admin token is wrong")]
        log.warning("inspector login from %s refused: wrong admin token", client)
        return _login_page(401, '<p class="error" role="alert">Wrong admin token.</p>')
    gateway.logins.succeeded(client)
    secure = request.headers.get("x-forwarded-proto", "").lower() == "https"
    cookie = await start_session(gateway.store, expected, secure=secure)
    headers = [("location", "/"), ("set-cookie", cookie), *_HTML_HEADERS]
    return Response(303, b"", "text/plain; charset=utf-8", headers)


_NO_JSON_TOKEN = 'A JSON body must be an object with the admin token as "token" (or send the form: token=...)'
_NO_TOKEN = 'No admin token: send the form token=... or the JSON object {"token": "..."}'
_TOKEN_TWICE = 'The JSON body names "token" twice: send the admin token once'


def _login_token(body: bytes, json_type: bool) -> tuple[str | None, str]:
    """The token a login body holds, stripped, or None and why there is none. A body that is
    a JSON object is read as JSON whatever its Content-Type: curl's ``-d '{"token": ...}'``
    sends it form-encoded, and was answered "Wrong admin token" and counted (a re-trial)."""
    pairs = _json_pairs(body)
    if pairs is not None:
        tokens = [value for key, value in pairs if key == "token"]
        if len(tokens) > 1:
            return None, _TOKEN_TWICE
        token = tokens[0] if tokens else None
        return (token.strip(), "") if isinstance(token, str) else (None, _NO_JSON_TOKEN)
    if json_type:
        return None, _NO_JSON_TOKEN
    form = parse_qs(body.decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    return (token, "") if token else (None, _NO_TOKEN)


def _json_pairs(body: bytes) -> list[tuple[str, object]] | None:
    """The top-level key, value pairs of a body that is a JSON object, every one (a key given
    twice is kept twice); None when it is not one."""
    if not body.lstrip().startswith(b"{"):
        return None
    pairs: list[list[tuple[str, object]]] = []

    def keep(items: list[tuple[str, object]]) -> dict[str, object]:
        pairs.append(items)
        return {}

    try:
        json.loads(body, object_pairs_hook=keep)
    except (ValueError, RecursionError):
        return None
    return pairs[-1]  # the outermost object is made last


async def post_logout(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "inspector"
    await end_session(request.headers, gateway.store, gateway.config.server.admin_token)
    headers = [("location", "/"), ("set-cookie", clear_cookie()), *_HTML_HEADERS]
    return Response(303, b"", "text/plain; charset=utf-8", headers)


async def get_asset(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "inspector"
    content_type = ASSETS[request.path]
    caching = "public, max-age=31536000, immutable" if request.query.get("v") == _asset_version() else "no-cache"
    headers = [("cache-control", caching), ("x-content-type-options", "nosniff")]
    return Response(200, _file("static/" + request.path.rsplit("/", 1)[1]), content_type, headers)
