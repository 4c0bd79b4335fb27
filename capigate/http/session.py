"""The inspector's login: the admin token, typed once, kept as a session cookie.

The cookie never holds the token itself but an HMAC of it, so it stays valid across worker
processes and restarts, and stops being valid when the token changes. It is ``HttpOnly``
(page scripts cannot read it) and ``SameSite=Strict`` (other sites' pages cannot send it). A
request that changes something must also carry the ``X-Capigate-Inspector`` header, which a
page of another origin cannot add without a CORS preflight that capigate never grants: this
covers sites on the same host but another port, which SameSite counts as the same site.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie

__all__ = ["COOKIE", "CSRF_HEADER", "clear_cookie", "has_session", "session_cookie"]

COOKIE = "capigate_session"
CSRF_HEADER = "x-capigate-inspector"
MAX_AGE_S = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def _session_value(admin_token: str) -> str:
    return hmac.new(admin_token.encode(), b"capigate inspector session v1", hashlib.sha256).hexdigest()


def has_session(method: str, headers: dict[str, str], admin_token: str) -> bool:
    """True when the request carries this gateway's session cookie (and, unless it only reads,
    the inspector's header)."""
    raw = headers.get("cookie")
    if not raw or not admin_token:
        return False
    if method not in _SAFE_METHODS and CSRF_HEADER not in headers:
        return False
    try:
        jar: SimpleCookie = SimpleCookie(raw)
    except CookieError:
        return False
    morsel = jar.get(COOKIE)
    return morsel is not None and hmac.compare_digest(morsel.value.encode(), _session_value(admin_token).encode())


def session_cookie(admin_token: str, *, secure: bool) -> str:
    flags = "; Secure" if secure else ""
    value = _session_value(admin_token)
    return f"{COOKIE}={value}; Path=/; Max-Age={MAX_AGE_S}; HttpOnly; SameSite=Strict{flags}"


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
