"""The relay's HTTP/1.1 client against raw local servers that answer exactly the bytes a test
gives: framing (Content-Length, chunked, the connection's end), 1xx, keep-alive, failures, TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from capigate.relay.http1 import UpstreamClient, UpstreamError, UpstreamResponse
from tests.helpers import self_signed_certificate

Answer = Callable[[bytes], bytes | None]  # request head + body -> raw answer (None: close without one)


async def serve(answer: Answer, ssl_context: ssl.SSLContext | None = None) -> tuple[asyncio.Server, list[int]]:
    """A server that answers each request with ``answer``; returns it and its connection count."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                raw = answer(head + await reader.readexactly(length))
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if b"connection: close" in raw.lower() or (
                    b"content-length" not in raw.lower() and b"chunked" not in raw and b" 204 " not in raw[:13]
                ):  # framed by the connection's end (a 204 is framed by its head)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
    return server, connections


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


async def post_twice(answer: Answer, **client: object) -> tuple[list[UpstreamResponse], int]:
    server, connections = await serve(answer)
    port = server.sockets[0].getsockname()[1]
    up = UpstreamClient(f"http://127.0.0.1:{port}/base", connections=1)
    try:
        got = [await up.post("/v1/event?pixel_id=p", {"authorization": "k"}, b'{"events":[]}') for _ in range(2)]
    finally:
        await up.aclose()
        server.close()
    return got, len(connections)


def test_content_length_answers_reuse_one_connection_and_the_request_is_sent_as_given() -> None:
    seen: list[bytes] = []

    def answer(request: bytes) -> bytes:
        seen.append(request)
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    async def test() -> None:
        (first, second), connections = await post_twice(answer)
        assert (first.status, first.body, first.header("content-type")) == (200, b"{}", "application/json")
        assert second.status == 200 and connections == 1
        head, _, body = seen[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /base/v1/event?pixel_id=p HTTP/1.1"
        assert b"authorization: k" in lines and b"content-length: 13" in lines and body == b'{"events":[]}'
        assert any(line.startswith(b"host: 127.0.0.1:") for line in lines)

    run(test)


def test_chunked_answers_and_interim_1xx_answers_are_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n"
    )

    async def test() -> None:
        (first, second), connections = await post_twice(lambda request: chunked)
        assert (first.status, first.body) == (400, b"hello, world")
        assert [v for k, v in first.headers if k == "x-a"] == ["1", "2"]
        assert second.body == b"hello, world" and connections == 1

    run(test)


def test_a_204_without_a_length_ends_at_its_head_and_the_connection_is_reused() -> None:
    """RFC 9112 6.3: a 204 has no body. Read to the connection's end, as an answer without a
    length is, it waited out timeout_s on a kept-alive connection: every batch a collector took
    with 204 was retried until dead-lettered (a trial)."""

    async def test() -> None:
        (first, second), connections = await asyncio.wait_for(
            post_twice(lambda request: b"HTTP/1.1 204 No Content\r\n\r\n"), 5
        )
        assert (first.status, first.body, second.status) == (204, b"", 204)
        assert connections == 1

    run(test)


def test_an_answer_framed_by_the_connections_end_is_read_and_the_connection_not_reused() -> None:
    async def test() -> None:
        (first, second), connections = await post_twice(lambda request: b"HTTP/1.0 503 Busy\r\n\r\nbusy, try later")
        assert (first.status, first.body, second.body) == (503, b"busy, try later", b"busy, try later")
        assert connections == 2

    run(test)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "closed before the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed in the middle of the answer"),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort", "closed in the middle"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad or too large Content-Length"),
    ],
)
def test_an_incomplete_or_foreign_answer_is_an_upstream_error(raw: bytes | None, message: str) -> None:
    def answer(request: bytes) -> bytes | None:
        return raw

    async def test() -> None:
        server, _ = await serve(answer)
        port = server.sockets[0].getsockname()[1]
        up = UpstreamClient(f"http://127.0.0.1:{port}", connections=1)
        try:
            with pytest.raises(UpstreamError, match=message):
                await up.post("/", {}, b"x")
        finally:
            await up.aclose()
            server.close()

    run(test)


def test_a_refused_connection_is_an_upstream_error_naming_the_host(tmp_path: Path) -> None:
    async def test() -> None:
        server, _ = await serve(lambda request: None)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        up = UpstreamClient(f"http://127.0.0.1:{port}", connections=1)
        with pytest.raises(UpstreamError, match=f"cannot connect to 127.0.0.1:{port}"):
            await up.post("/", {}, b"x")

    run(test)


def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    up = UpstreamClient("http://127.0.0.1:9", connections=1)
    with pytest.raises(ValueError, match="line break"):
        asyncio.run(up.post("/", {"authorization": "k\r\nx-injected: 1"}, b""))


def test_https_checks_the_certificate_against_the_trusted_authorities(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def test() -> None:
        server, _ = await serve(lambda request: ok, server_side)
        port = server.sockets[0].getsockname()[1]
        trusting = UpstreamClient(
            f"https://127.0.0.1:{port}", connections=1, ssl_context=ssl.create_default_context(cafile=cert)
        )
        distrusting = UpstreamClient(f"https://127.0.0.1:{port}", connections=1)
        try:
            assert (await trusting.post("/", {}, b"x")).body == b"ok"
            with pytest.raises(UpstreamError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await distrusting.post("/", {}, b"x")
        finally:
            await trusting.aclose()
            await distrusting.aclose()
            server.close()

    run(test)
