"""A small HTTP/1.1 client for the relay: keep-alive connections to one upstream origin.

Why not httpx here: relaying is a loop of large POSTs to one host, and on the 2-core
reference machine httpx/httpcore spent ~5 ms of CPU per 50 KB request (two socket sends,
~2,500 Python calls), which capped the relay near 5,000 Axon events/s. This client writes
each request with one send and parses the answer with a few ``bytes`` operations.

It does only what an upstream conversions API needs: ``POST`` with a ``Content-Length``
body over ``http`` or ``https`` (certificates checked), responses framed by
``Content-Length``, ``chunked`` or the connection's end, 1xx answers skipped, keep-alive
honoured for ``KEEPALIVE_EXPIRY_S`` (as httpx), no request sent twice. Every failure is an
``UpstreamError`` (a ``TransportError``); the caller bounds the whole exchange with a
timeout, and a connection interrupted in any way is thrown away.

Behind an egress proxy it reads ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` as curl and httpx do
(the standard library's ``urllib.request.getproxies``): ``https`` goes through a ``CONNECT``
tunnel (TLS end to end with the upstream), ``http`` as absolute-form requests to the proxy;
``user:password@`` in the proxy URL becomes ``Proxy-Authorization: Basic``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
import urllib.request
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from capigate.__version__ import __version__
from capigate.errors import TransportError

__all__ = ["Proxy", "UpstreamClient", "UpstreamError", "UpstreamResponse", "proxy_for"]

MAX_HEAD_BYTES: Final = 256 * 1024
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
KEEPALIVE_EXPIRY_S: Final = 5.0  # an idle connection older than this is not reused
_USER_AGENT: Final = f"capigate/{__version__}".encode()


class UpstreamError(TransportError):
    """The request did not get a complete HTTP answer (connection, TLS, framing)."""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in the order received
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: bytes | None  # the Proxy-Authorization value, from user:password@ in its URL

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def proxy_for(url: str) -> Proxy | None:
    """The proxy the environment asks ``url`` to go through, or None (no proxy, or NO_PROXY)."""
    parts = urlsplit(url)
    proxy_url = urllib.request.getproxies().get(parts.scheme)
    if not proxy_url or not parts.hostname:
        return None
    if urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):  # NO_PROXY, with or without the port
        return None
    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url  # HTTPS_PROXY=proxy:3128, as curl takes it
    proxy = urlsplit(proxy_url)
    if proxy.scheme != "http" or not proxy.hostname:
        raise ValueError(f"proxy {proxy_url!r}: only http:// proxies are supported (https goes through CONNECT)")
    authorization = None
    if proxy.username is not None:
        credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        authorization = b"Basic " + base64.b64encode(credentials)
    return Proxy(proxy.hostname, proxy.port or 80, authorization)


class UpstreamClient:
    """Up to ``connections`` keep-alive connections to the origin of ``base_url``, through
    ``proxy`` if given (default: the one the environment names for it, see ``proxy_for``)."""

    def __init__(
        self,
        base_url: str,
        *,
        connections: int,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | Literal["environment"] | None = "environment",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = (host if default_port else f"{host}:{self.port}").encode("idna")
        self._ssl = (ssl_context or _default_ssl_context()) if parts.scheme == "https" else None
        self.proxy = proxy_for(base_url) if proxy == "environment" else proxy
        # Plain http through a proxy: the request line names the whole URL (absolute form).
        self._origin = f"http://{self._host_header.decode()}" if self.proxy and not self._ssl else ""
        self._idle: list[tuple[_Connection, float]] = []  # with when it became idle (monotonic)
        self._slots = asyncio.Semaphore(connections)
        self._closed = False

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """``path`` (with its query) is appended to the base URL's path."""
        head = self._head(path, headers, len(body))
        async with self._slots:
            if self._closed:
                raise UpstreamError("the client is closed")
            conn = self._reusable() or await self._connect()
            try:
                response, keep = await _exchange(conn, head, body)
            except BaseException:
                _discard(conn)  # cancelled, timed out or broken mid-exchange: state unknown
                raise
            if keep and not self._closed:
                self._idle.append((conn, time.monotonic()))
            else:
                _discard(conn)
            return response

    def _reusable(self) -> _Connection | None:
        expired = time.monotonic() - KEEPALIVE_EXPIRY_S
        while self._idle:
            conn, since = self._idle.pop()
            if since > expired and not conn[0].at_eof():
                return conn
            _discard(conn)
        return None

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = [conn for conn, _ in self._idle], []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
                await writer.wait_closed()

    def _head(self, path: str, headers: dict[str, str], length: int) -> bytes:
        lines = [
            b"POST " + (self._origin + self.base_path + path).encode("ascii") + b" HTTP/1.1",
            b"host: " + self._host_header,
            b"user-agent: " + _USER_AGENT,
            b"content-length: " + str(length).encode(),
        ]
        if self.proxy is not None and self.proxy.authorization and not self._ssl:
            lines.append(b"proxy-authorization: " + self.proxy.authorization)
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _connect(self) -> _Connection:
        if self.proxy is not None:
            return await self._connect_through(self.proxy)
        try:
            return await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
                limit=MAX_HEAD_BYTES,
            )
        except OSError as exc:  # ssl.SSLError included
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {_describe(exc)}") from exc

    async def _connect_through(self, proxy: Proxy) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port, limit=MAX_HEAD_BYTES)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the proxy {proxy.name}: {_describe(exc)}") from exc
        if self._ssl is None:
            return reader, writer
        try:
            await self._tunnel(proxy, reader, writer)
            await writer.start_tls(self._ssl, server_hostname=self.host)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, OSError):  # ssl.SSLError included
                raise UpstreamError(f"through the proxy {proxy.name}: {_describe(exc)}") from exc
            raise
        return reader, writer

    async def _tunnel(self, proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self._host_header if self.port != 443 else self._host_header + b":443"
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"host: " + target, b"user-agent: " + _USER_AGENT]
        if proxy.authorization:
            lines.append(b"proxy-authorization: " + proxy.authorization)
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        await writer.drain()
        try:
            status, _, _ = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise UpstreamError(f"the proxy {proxy.name} closed the connection before answering CONNECT") from None
        if status != 200:
            raise UpstreamError(f"the proxy {proxy.name} refused CONNECT {target.decode()}: HTTP {status}")


async def _exchange(conn: _Connection, head: bytes, body: bytes) -> tuple[UpstreamResponse, bool]:
    reader, writer = conn
    try:
        writer.write(head + body)
        await writer.drain()
        while True:
            try:
                raw_head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                where = "in the middle of" if exc.partial else "before"
                raise UpstreamError(f"the connection closed {where} the answer") from None
            status, headers, keep = _parse_head(raw_head)
            if status >= 200:
                break  # 1xx: an interim answer, the real one follows
        payload = b"" if status in _NO_BODY else await _read_body(reader, headers)
    except asyncio.LimitOverrunError:
        raise UpstreamError(f"the answer's head is over {MAX_HEAD_BYTES} bytes") from None
    except asyncio.IncompleteReadError:
        raise UpstreamError("the connection closed in the middle of the answer") from None
    except OSError as exc:  # ssl.SSLError included
        raise UpstreamError(_describe(exc)) from exc
    framed = status in _NO_BODY or any(k in ("content-length", "transfer-encoding") for k, _ in headers)
    return UpstreamResponse(status=status, headers=headers, body=payload), keep and framed


# RFC 9112 6.3: these answers end at their head whatever it says. A 204 read to the
# connection's end, as an answer without a length is, waited out timeout_s on a kept-alive
# connection: each delivered batch taken for a timeout, and sent again until dead-lettered.
_NO_BODY: Final = frozenset({204, 304})


def _parse_head(raw: bytes) -> tuple[int, list[tuple[str, str]], bool]:
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise UpstreamError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpstreamError(f"malformed header line: {line[:80]!r}")
        headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    connection = ",".join(v.lower() for k, v in headers if k == "connection")
    keep = "close" not in connection if version == b"HTTP/1.1" else "keep-alive" in connection
    return int(code), headers, keep


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    encoding = ",".join(v.lower() for k, v in headers if k == "transfer-encoding")
    if "chunked" in encoding:
        return await _read_chunked(reader)
    length = next((v for k, v in headers if k == "content-length"), None)
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise UpstreamError(f"bad or too large Content-Length: {length[:40]!r}")
        return await reader.readexactly(int(length))
    parts: list[bytes] = []  # framed by the connection's end
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise UpstreamError(f"the answer's body is over {MAX_BODY_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UpstreamError(f"bad chunk size: {size_text[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise UpstreamError(f"the answer's body is over {MAX_BODY_BYTES} bytes")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _discard(conn: _Connection) -> None:
    conn[1].close()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _default_ssl_context() -> ssl.SSLContext:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
