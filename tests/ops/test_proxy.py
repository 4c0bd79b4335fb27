"""Egress through a corporate proxy: the relay's HTTP/1.1 client honours HTTPS_PROXY, HTTP_PROXY
and NO_PROXY, tunnels https with CONNECT (TLS checked end to end with the upstream), and a
whole gateway relays its events through a real local proxy."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from capigate.relay.http1 import UpstreamClient, UpstreamError
from tests.conftest import make_server
from tests.helpers import batch, purchase, self_signed_certificate
from tests.ops.connect_proxy import ConnectProxy
from tests.test_relay_e2e import config as relay_config
from tests.test_relay_http1 import run, serve
from tests.upstream import Upstream

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_http_goes_to_the_proxy_in_absolute_form(no_proxy_env: pytest.MonkeyPatch) -> None:
    with ConnectProxy() as proxy, Upstream() as upstream:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        client = UpstreamClient(upstream.url + "/base", connections=1)

        async def test() -> None:
            try:
                answer = await client.post("/v1/event?pixel_id=p", {"authorization": "k"}, b'{"events":[]}')
            finally:
                await client.aclose()
            assert answer.status == 200

        run(test)
        assert proxy.lines == [f"POST {upstream.url}/base/v1/event?pixel_id=p HTTP/1.1"]
        (seen,) = upstream.requests()
        assert seen.path == "/base/v1/event" and seen.headers["authorization"] == "k"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


def test_https_goes_through_a_connect_tunnel_with_tls_to_the_upstream(
    no_proxy_env: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    received: list[bytes] = []
    with ConnectProxy(require=b"Basic " + base64.b64encode(b"relay:s3cret p")) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", f"http://relay:s3cret%20p@127.0.0.1:{proxy.port}")

        async def test() -> None:
            def answer(request: bytes) -> bytes:
                received.append(request)
                return OK

            server, _ = await serve(answer, server_side)
            port = server.sockets[0].getsockname()[1]
            trusting = UpstreamClient(
                f"https://127.0.0.1:{port}", connections=1, ssl_context=ssl.create_default_context(cafile=cert)
            )
            distrusting = UpstreamClient(f"https://127.0.0.1:{port}", connections=1)
            try:
                assert (await trusting.post("/v1/event", {}, b"x")).body == b"ok"
                assert (await trusting.post("/v1/event", {}, b"y")).body == b"ok"  # the tunnel is kept
                with pytest.raises(UpstreamError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                    await distrusting.post("/", {}, b"x")
            finally:
                await trusting.aclose()
                await distrusting.aclose()
                server.close()
            assert proxy.lines[:1] == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]

        run(test)
    assert len(proxy.lines) == 2  # one tunnel for the two requests, one for the distrusting client
    assert [r.split(b"\r\n", 1)[0] for r in received] == [b"POST /v1/event HTTP/1.1"] * 2


def test_a_proxy_that_refuses_is_an_upstream_error_naming_it(no_proxy_env: pytest.MonkeyPatch) -> None:
    with ConnectProxy(require=b"Basic nobody") as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = UpstreamClient("https://127.0.0.1:9", connections=1)

        async def test() -> None:
            try:
                with pytest.raises(UpstreamError, match=rf"proxy 127.0.0.1:{proxy.port} refused CONNECT.*407"):
                    await client.post("/", {}, b"x")
            finally:
                await client.aclose()

        run(test)


def test_no_proxy_names_the_hosts_reached_directly(no_proxy_env: pytest.MonkeyPatch) -> None:
    from capigate.relay.http1 import proxy_for

    no_proxy_env.setenv("HTTPS_PROXY", "proxy.internal:3128")
    no_proxy_env.setenv("NO_PROXY", "localhost,.corp.example,10.1.2.3")
    direct = ["https://localhost:8443/x", "https://api.corp.example/v1", "https://10.1.2.3/"]
    assert [proxy_for(url) for url in direct] == [None, None, None]
    via = proxy_for("https://a.applovin.com/v1/event")
    assert via is not None and (via.host, via.port) == ("proxy.internal", 3128)
    assert proxy_for("http://a.applovin.com/v1/event") is None  # HTTP_PROXY is not set


def test_a_gateway_relays_through_the_proxy(tmp_path: Path) -> None:
    with ConnectProxy() as proxy, Upstream() as upstream:
        server = make_server(
            tmp_path / "gw", relay_config(upstream.url), HTTP_PROXY=proxy.url, NO_PROXY="", no_proxy=""
        )
        server.start(timeout_s=30)
        try:
            with server.client() as c:
                events = [purchase() for _ in range(3)]
                r = c.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": "key-std"})
                assert r.status_code == 200, r.text
            upstream.wait_for(lambda: len(upstream.dedupe_ids()) == 3, what="3 events relayed")
        finally:
            server.stop()
    assert sorted(upstream.dedupe_ids()) == sorted(e["dedupe_id"] for e in events)
    assert proxy.lines and all(line.startswith(f"POST {upstream.url}/v1/event") for line in proxy.lines)
