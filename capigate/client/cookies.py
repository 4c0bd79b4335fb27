"""The ``aleid`` click id on a web server, as the Axon spec asks, for any framework.

AppLovin adds ``?aleid=...`` to a landing page URL after an ad click. The spec's recipe: read
it server-side, keep it in a first-party cookie ``_axeid`` for a year, and send the cookie's
value as ``user_data.aleid`` with later events. The Axon Pixel, when installed, also sets
``_axwrt`` (sent as ``user_data.axwrt``).

    aleid = read_aleid(request.query_string, request.headers.get("cookie"))
    header = axeid_set_cookie_for(request.query_string, request.headers.get("cookie"))
    if header:
        response.headers.append("Set-Cookie", header)

Queries may be given as a raw query string (``a=1&aleid=x``) or a mapping (values a string or a
list of strings); cookies as a raw ``Cookie`` header or a mapping of name to value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import parse_qs, quote, unquote

__all__ = [
    "ALEID_PARAM",
    "AXEID_COOKIE",
    "AXEID_MAX_AGE_S",
    "AXWRT_COOKIE",
    "axeid_set_cookie",
    "axeid_set_cookie_for",
    "parse_cookie_header",
    "read_aleid",
    "read_axwrt",
]

ALEID_PARAM: Final = "aleid"
AXEID_COOKIE: Final = "_axeid"
AXWRT_COOKIE: Final = "_axwrt"
AXEID_MAX_AGE_S: Final = 365 * 24 * 3600  # "a one-year expiration time"
_MAX_VALUE_CHARS: Final = 512  # a click id; anything longer is not one

Query = str | Mapping[str, str] | Mapping[str, Sequence[str]]
Cookies = str | Mapping[str, str] | None


def parse_cookie_header(header: str) -> dict[str, str]:
    """``a=1; b="2"`` as {a: 1, b: 2}; the first of repeated names wins, as browsers send
    the most specific cookie first. Malformed pairs are skipped."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies


def _query_value(query: Query, name: str) -> str | None:
    if isinstance(query, str):
        values = parse_qs(query.lstrip("?"), keep_blank_values=False).get(name)
        return values[0] if values else None
    value = query.get(name)
    if value is None or isinstance(value, str):
        return value
    return next(iter(value), None)


def _cookie_value(cookies: Cookies, name: str) -> str | None:
    if cookies is None:
        return None
    jar = parse_cookie_header(cookies) if isinstance(cookies, str) else cookies
    raw = jar.get(name)
    return unquote(raw) if raw else None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_VALUE_CHARS or not value.isprintable():
        return None
    return value


def read_aleid(query: Query, cookies: Cookies = None) -> str | None:
    """The ``aleid`` to send: the query parameter of this request if present (a new click),
    else the ``_axeid`` cookie set on an earlier visit, else None."""
    return _clean(_query_value(query, ALEID_PARAM)) or _clean(_cookie_value(cookies, AXEID_COOKIE))


def read_axwrt(cookies: Cookies) -> str | None:
    """The ``_axwrt`` cookie the Axon Pixel sets, for ``user_data.axwrt``."""
    return _clean(_cookie_value(cookies, AXWRT_COOKIE))


def axeid_set_cookie(aleid: str, *, domain: str | None = None, secure: bool = True) -> str:
    """The ``Set-Cookie`` header value keeping ``aleid`` in ``_axeid`` for a year:
    ``Max-Age`` one year, ``Path=/``, ``Secure``, ``SameSite=Lax`` (sent on the top-level
    navigation that follows an ad click). ``domain`` widens it to subdomains; ``secure=False``
    only for plain-HTTP development."""
    value = _clean(aleid)
    if value is None:
        raise ValueError("aleid must be 1 to 512 printable characters")
    parts = [f"{AXEID_COOKIE}={quote(value, safe='')}", f"Max-Age={AXEID_MAX_AGE_S}", "Path=/"]
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    parts.append("SameSite=Lax")
    return "; ".join(parts)


def axeid_set_cookie_for(
    query: Query, cookies: Cookies = None, *, domain: str | None = None, secure: bool = True
) -> str | None:
    """The ``Set-Cookie`` value to add to this response, or None: set when the request
    carries an ``aleid`` the ``_axeid`` cookie does not already hold."""
    clicked = _clean(_query_value(query, ALEID_PARAM))
    if clicked is None or clicked == _clean(_cookie_value(cookies, AXEID_COOKIE)):
        return None
    return axeid_set_cookie(clicked, domain=domain, secure=secure)
