"""One route list (capigate/gateway.py), answered in one place (capigate/http/routing.py)."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

import capigate.http
from capigate.gateway import ROUTES
from capigate.http import api, app, appsflyer, axon
from capigate.http.asgi import peer_address, peer_host
from capigate.http.routing import NOT_FOUND, Route, Router
from capigate.inspector import pages
from tests.conftest import ADMIN, Server
from tests.helpers import wait_until

router = Router(ROUTES)


def test_a_route_is_found_by_method_and_path() -> None:
    assert router.match("POST", "/v1/event").handler is axon.post_event
    assert router.match("GET", "/healthz").handler is app.get_healthz


def test_a_path_ending_in_a_parameter_matches_by_prefix_and_counts_under_its_template() -> None:
    route = router.match("POST", "/inappevent/com.example.app")
    assert route.handler is appsflyer.post_in_app_event
    assert route.metric == "/inappevent/{app_id}"
    assert router.match("GET", "/api/events/abc").handler is api.get_event


def test_an_unknown_path_is_not_found_and_counted_as_other() -> None:
    assert router.match("GET", "/wp-login.php") is NOT_FOUND
    assert NOT_FOUND.metric == "other"
    assert NOT_FOUND.journaled


def test_another_method_on_a_known_path_keeps_the_paths_journaling_and_label() -> None:
    refused = router.match("GET", "/v1/event")
    assert refused.handler is not axon.post_event
    assert (refused.metric, refused.journaled) == ("/v1/event", True)
    refused = router.match("DELETE", "/healthz")
    assert (refused.metric, refused.journaled) == ("/healthz", False)
    assert router.match("GET", "/inappevent/x").metric == "/inappevent/{app_id}"


def test_the_ingest_endpoints_and_logins_are_journaled_and_the_reads_are_not() -> None:
    journaled = {r.path for r in ROUTES if r.journaled}
    assert journaled == {"/v1/event", "/inappevent/{app_id}", "/login"}  # a failed login leaves a trace
    assert router.match("GET", "/").handler is pages.get_page
    assert not router.match("GET", "/api/events/x").journaled


def test_two_routes_for_one_method_and_path_are_refused() -> None:
    with pytest.raises(ValueError, match="/healthz"):
        Router([*ROUTES, Route("GET", "/healthz", app.get_readyz)])


def test_nothing_in_the_http_layer_imports_the_inspector() -> None:
    http = Path(capigate.http.__file__).parent
    importers = []
    for path in sorted(http.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            if any(name.startswith("capigate.inspector") for name in names):
                importers.append(path.name)
    assert importers == []


def test_a_refused_method_is_405_with_allow_and_an_unknown_path_404(server: Server) -> None:
    with server.client() as c:
        r = c.get("/v1/event?pixel_id=px_std")
        assert (r.status_code, r.headers["allow"], r.json()["error"]) == (405, "POST", "method_not_allowed")
        r = c.delete("/inappevent/com.example.app")
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
        r = c.post("/api/events", headers={"Authorization": f"Bearer {ADMIN}"})
        assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
        r = c.get("/no/such/thing")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
        assert "allow" not in r.headers


def test_a_trailing_slash_after_an_endpoint_is_named_in_the_404(server: Server) -> None:
    """`POST /v1/event/` got "no endpoint at /v1/event/" and no hint (a trial), where the
    AppsFlyer side names the slash."""
    with server.client() as c:
        r = c.post("/v1/event/?pixel_id=px_std", headers={"Authorization": "key-std"}, json={"events": []})
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
        assert r.json()["message"] == "no endpoint at /v1/event/: drop the trailing '/': POST /v1/event is the endpoint"
        r = c.get("/healthz/")
        assert r.status_code == 404 and "GET /healthz is the endpoint" in r.json()["message"], r.text
        assert "trailing" not in c.get("/no/such/thing/").json()["message"]


def _raw(server: Server, request: str, *headers: str, body: str = "") -> bytes:
    """The whole answer to ``request`` (its first line), sent as is, read until the server
    closes the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    lines = [request, f"Host: {host}", "Connection: close", *headers, "", body]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _raw_head(server: Server, path: str, *headers: str) -> bytes:
    return _raw(server, f"HEAD {path} HTTP/1.1", *headers)


_LONGEST_TARGET = 65_534  # granian's (its HTTP parser's) longest request target, docs/api.md "Limits"


def _raw_post(server: Server, target: str) -> bytes:
    """The whole answer to a keyless POST of ``{}`` to ``target``, sent as is."""
    return _raw(server, f"POST {target} HTTP/1.1", "Content-Length: 2", body="{}")


def test_a_request_target_past_granians_limit_is_its_414_as_the_docs_say(server: Server) -> None:
    """A trial: a 70 KB ?pixel_id= got a 414 with an empty body, not capigate's JSON. granian
    answers it before the app sees the request (no request id, no journal line): the limit is
    documented where the others are, and this pins its size."""
    target = "/v1/event?pixel_id="
    head, _, body = _raw_post(server, target + "a" * (_LONGEST_TARGET - len(target))).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"x-capigate-request-id" in head.lower(), head
    assert body.startswith(b'{"status":"error"'), body
    head, _, body = _raw_post(server, target + "a" * (_LONGEST_TARGET + 1 - len(target))).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414") and b"x-capigate-request-id" not in head.lower(), head
    assert body == b""
    limits = (Path(__file__).parents[1] / "docs" / "api.md").read_text().split("### Limits", 1)[1].split("###", 1)[0]
    assert f"longer than {_LONGEST_TARGET:,} bytes gets `414 URI Too Long` with an empty body" in " ".join(
        limits.split()
    )


def test_rule_head_is_answered_wherever_get_is_without_a_body(server: Server) -> None:
    for route in ROUTES:
        if route.method == "GET":
            assert router.match("HEAD", route.path).handler is route.handler, route
    answer = _raw_head(server, "/healthz")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    assert b"content-type: application/json" in head.lower() and body == b""
    admin = _raw_head(server, "/api/events?limit=1", f"Authorization: Bearer {ADMIN}")
    assert admin.startswith(b"HTTP/1.1 200") and admin.endswith(b"\r\n\r\n")
    refused = _raw_head(server, "/v1/event")
    assert refused.startswith(b"HTTP/1.1 405") and refused.endswith(b"\r\n\r\n")
    with server.client() as c:
        assert c.head("/healthz").status_code == 200
        assert c.head("/readyz").status_code in (200, 503)
        assert c.post("/healthz").headers["allow"] == "GET, HEAD"


def test_rule_a_head_answer_carries_the_content_length_of_the_get_answer(server: Server) -> None:
    with server.client() as c:
        for path in ("/healthz", "/openapi.json", "/no/such/thing"):
            got = c.get(path)
            answer = _raw_head(server, path)
            head, _, body = answer.partition(b"\r\n\r\n")
            lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            assert lengths == [f"content-length: {len(got.content)}".encode()], (path, answer)
            assert body == b"" and len(got.content) > 0


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("127.0.0.1:51234", ("127.0.0.1", 51234)),
        ("[::1]:8080", ("::1", 8080)),
        ("[2001:db8::7]:443", ("2001:db8::7", 443)),
        ("unix-socket", None),
        ("", None),
    ],
)
def test_a_peer_is_read_once_for_the_client_ip_and_the_idle_reaper(peer: str, address: tuple[str, int] | None) -> None:
    """granian names a connection's other end "ip:port" or "[v6]:port": the journal's client
    IP (Request.from_rsgi) and the sockets the idle reaper spares (getpeername's pair) read it
    with the same two functions."""
    assert peer_address(peer) == address
    assert peer_host(peer) == (address[0] if address else "")


def test_a_huge_path_and_user_agent_are_journaled_and_logged_capped(fresh_server: Server) -> None:
    """Anyone, without a key, wrote a 60 KB path and User-Agent into the journal and the log
    with each request (a trial): kept whole, a million journal entries are 60 GB."""
    path = "/" + "Z" * 60_000
    with fresh_server.client() as c:
        assert c.get(path, headers={"User-Agent": "U" * 60_000}).status_code == 404
    with fresh_server.admin() as c:
        wait_until(lambda: c.get("/api/requests", params={"status": 404}).json()["requests"] != [], what="the 404")
        (row,) = c.get("/api/requests", params={"status": 404}).json()["requests"]
    assert row["path"].startswith("/ZZZ") and row["path"].endswith("… (60,001 characters)"), row["path"][-40:]
    assert len(row["path"]) < 1100 and len(row["user_agent"]) < 600, (len(row["path"]), len(row["user_agent"]))
    assert max(len(line) for line in fresh_server.output().splitlines()) < 4000
