"""Hostile admin API input: strict parameter parsing (400 naming the parameter, never a 500 and
never SQL text), and a repeated ``pixel_id`` on the Axon endpoint (400, not last-wins)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest

from capigate.http.params import encode_cursor
from tests.conftest import Server, make_server
from tests.helpers import batch, purchase, wait_until
from tests.storekit import BACKENDS, PG_URL, pg_schema

SQL_TEXT = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|WHERE|sqlite3|psycopg|Traceback|\w+Error)\b")

BAD_QUERIES = [
    ("/api/events", {"limit": "¹"}, "query.limit"),
    ("/api/events", {"limit": "0"}, "query.limit"),
    ("/api/events", {"since": "²"}, "query.since"),
    ("/api/events", {"until": "99999999999999999999999"}, "query.until"),
    ("/api/events", {"until": "9999999999999999"}, "query.until"),
    ("/api/events", {"cursor": "z" * 40}, "query.cursor"),
    ("/api/events", {"cursor": "-1"}, "query.cursor"),
    ("/api/requests", {"limit": "¹"}, "query.limit"),
    ("/api/requests", {"since": "²"}, "query.since"),
    ("/api/requests", {"until": "99999999999999999999999"}, "query.until"),
    ("/api/requests", {"cursor": "z" * 40}, "query.cursor"),
    ("/api/requests", {"status": "99999999999999999999999"}, "query.status"),
    ("/api/requests", {"status": "²"}, "query.status"),
]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A gateway on each store backend: PostgreSQL's errors quote the SQL they failed on."""
    with contextlib.ExitStack() as stack:
        srv = make_server(tmp_path_factory.mktemp(f"input-{request.param}"))
        if request.param == "postgresql":
            srv.db = f"{PG_URL}?schema={stack.enter_context(pg_schema('capigate_input'))}"
        srv.start(timeout_s=30)
        stack.callback(srv.stop)
        yield srv


def _assert_no_sql(response: httpx.Response) -> None:
    assert SQL_TEXT.search(response.text) is None, response.text


@pytest.mark.parametrize(("path", "params", "named"), BAD_QUERIES)
def test_strict_query_parameters_are_400_naming_the_parameter(
    server: Server, path: str, params: dict[str, str], named: str
) -> None:
    with server.admin() as c:
        r = c.get(path, params=params)
    assert r.status_code == 400, r.text
    assert [p["path"] for p in r.json()["problems"]] == [named]
    _assert_no_sql(r)


@pytest.mark.parametrize("raw", ["¹", "١٢", "99999999999999999999999", str(2**63 - 1), "0", "-3", "12abc"])
def test_event_id_in_the_path_is_strict(server: Server, raw: str) -> None:
    with server.admin() as c:
        r = c.get(f"/api/events/{raw}")
    assert r.status_code == 400, r.text
    assert [p["path"] for p in r.json()["problems"]] == ["id"]
    _assert_no_sql(r)


def test_an_unknown_event_id_is_still_404(server: Server) -> None:
    with server.admin() as c:
        assert c.get(f"/api/events/{2**63 - 2}").status_code == 404


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"since": "¹"}, "since"),
        ({"until": "99999999999999999999999"}, "until"),
        ({"until": 99999999999999999}, "until"),
        ({"status": 10**15}, "status"),
    ],
)
def test_replay_filters_are_strict(server: Server, body: dict[str, object], named: str) -> None:
    with server.admin() as c:
        r = c.post("/api/replay", json=body)
    assert r.status_code == 400, r.text
    assert [p["path"] for p in r.json()["problems"]] == [named]
    _assert_no_sql(r)


def test_valid_filters_still_work(server: Server) -> None:
    with server.admin() as c:
        r = c.get("/api/events", params={"limit": "5", "since": "2020-01-01T00:00:00Z", "until": "253402300799999"})
        assert r.status_code == 200, r.text
        cursor = encode_cursor("requests", 1295)  # a cursor as a page's `next` gives it: made-up ones are refused
        assert c.get("/api/requests", params={"status": "200", "cursor": cursor}).status_code == 200
        assert c.post("/api/replay", json={"since": 0, "until": "2030-01-01"}).status_code == 200


def test_unauthenticated_bad_input_is_401_without_sql(server: Server) -> None:
    with server.client() as c:
        r = c.get("/api/events", params={"until": "99999999999999999999999"})
    assert r.status_code == 401
    _assert_no_sql(r)


def test_repeated_pixel_id_is_400_not_last_wins(server: Server) -> None:
    """Rule: a request names its pixel once; two pixel_ids could send one pixel's events as another's."""
    with server.client() as c:
        r = c.post(
            "/v1/event?pixel_id=px_lead&pixel_id=px_std",
            json=batch(purchase()),
            headers={"Authorization": "key-std"},
        )
    assert r.status_code == 400, r.text
    assert [p["path"] for p in r.json()["problems"]] == ["pixel_id"]
    with server.admin() as c:

        def journaled() -> bool:
            rows = c.get("/api/requests", params={"status": 400, "limit": 1000}).json()["requests"]
            return any(p["code"] == "repeated_parameter" for row in rows for p in row["problems"])

        wait_until(journaled, what="the refused request in the journal")
