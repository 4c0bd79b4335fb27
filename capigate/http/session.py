"""The inspector's login: the admin token, typed once, kept as a session.

A login makes a random session id, sent as an ``HttpOnly``, ``SameSite=Strict`` cookie; the
store keeps a digest of the id and the admin token with the time the session expires
(``MAX_AGE_S``), so every worker and node sees it, logout ends it everywhere at once, and
changing the admin token ends every session (their digests no longer match). A request that
changes something must also carry the ``X-Capigate-Inspector`` header, which a page of another
origin cannot add without a CORS preflight that capigate never grants: this covers sites on the
same host but another port, which SameSite counts as the same site.

Wrong tokens are throttled per client (``LoginThrottle``): a guesser gets a 429 with
``Retry-After`` after a few tries, instead of hundreds of guesses a second.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from capigate.store.base import Store

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "LoginThrottle",
    "clear_cookie",
    "end_session",
    "has_session",
    "lacks_csrf_header",
    "start_session",
]

COOKIE = "capigate_session"
CSRF_HEADER = "x-capigate-inspector"
MAX_AGE_S = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_MAX_ID_CHARS: Final = 64


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _key(session_id: str, admin_token: str) -> str:
    return hmac.new(
        admin_token.encode(), b"capigate inspector session v2 " + session_id.encode(), hashlib.sha256
    ).hexdigest()


def _session_id(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        jar: SimpleCookie = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    if morsel is None or not 0 < len(morsel.value) <= _MAX_ID_CHARS:
        return None
    return morsel.value


async def has_session(method: str, headers: dict[str, str], store: Store, admin_token: str) -> bool:
    """True when the request carries a live session of this gateway (and, unless it only
    reads, the inspector's header). StoreError when the store cannot say."""
    if not admin_token or (method not in _SAFE_METHODS and CSRF_HEADER not in headers):
        return False
    return await _live(headers, store, admin_token)


async def lacks_csrf_header(method: str, headers: dict[str, str], store: Store, admin_token: str) -> bool:
    """True when a write carries a live session but not the inspector's header: has_session
    refused it for the header alone, which the refusal then names."""
    if not admin_token or method in _SAFE_METHODS or CSRF_HEADER in headers:
        return False
    return await _live(headers, store, admin_token)


async def _live(headers: dict[str, str], store: Store, admin_token: str) -> bool:
    session_id = _session_id(headers)
    if session_id is None:
        return False
    expires_at = await store.session_expires_at(_key(session_id, admin_token))
    return expires_at is not None and expires_at > _now_ms()


async def start_session(store: Store, admin_token: str, *, secure: bool) -> str:
    """Record a new session; its ``Set-Cookie`` value."""
    session_id = secrets.token_urlsafe(32)
    now = _now_ms()
    await store.put_session(_key(session_id, admin_token), now + MAX_AGE_S * 1000, now)
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={session_id}; Path=/; Max-Age={MAX_AGE_S}; HttpOnly; SameSite=Strict{flags}"


async def end_session(headers: dict[str, str], store: Store, admin_token: str) -> None:
    session_id = _session_id(headers)
    if session_id is not None:
        await store.end_session(_key(session_id, admin_token))


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


class LoginThrottle:
    """Failed logins per client address: after ``max_failures`` within ``window_s``, the
    client waits until the oldest of them is ``window_s`` old. One per worker process; it
    remembers at most ``max_clients`` addresses (the least recently failing go first)."""

    def __init__(self, max_failures: int = 5, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, client: str | None, now: float | None = None) -> int:
        """0 when ``client`` may try now, else the whole seconds it must wait."""
        failures = self._failures.get(client or "")
        if failures is None:
            return 0
        now = time.monotonic() if now is None else now
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(failures) < self.max_failures:
            return 0
        return max(1, math.ceil(failures[0] + self.window_s - now))

    def failed(self, client: str | None, now: float | None = None) -> None:
        key = client or ""
        failures = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
        failures.append(time.monotonic() if now is None else now)
        self._failures[key] = failures
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str | None) -> None:
        self._failures.pop(client or "", None)
