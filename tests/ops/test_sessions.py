"""The inspector's door (issue #17): sessions with a random id and a server-side expiry,
ended by logout and by a new admin token; failed logins throttled, logged and journaled."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, make_server, served_on
from tests.storekit import BACKENDS

GUESS = "guessed-token-that-must-not-be-logged"


@pytest.fixture(params=BACKENDS)
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with served_on(request.param, tmp_path / "gw") as (server, _):
        yield server


def _login(server: Server, token: str = ADMIN) -> httpx.Response:
    with server.client() as client:
        return client.post("/login", data={"token": token})


def _cookie(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.cookies["capigate_session"]


def _reads(server: Server, cookie: str) -> int:
    with server.client(cookies={"capigate_session": cookie}) as client:
        return client.get("/api/requests").status_code


def test_each_login_is_a_new_session_that_logout_ends(gateway: Server) -> None:
    first, second = _cookie(_login(gateway)), _cookie(_login(gateway))
    assert first != second and len(first) >= 32
    assert _reads(gateway, first) == 200 and _reads(gateway, second) == 200
    with gateway.client(cookies={"capigate_session": first}) as client:
        assert client.post("/logout").status_code == 303
    assert _reads(gateway, first) == 401  # ended on the server, whatever the browser keeps
    assert _reads(gateway, second) == 200  # another session lives on
    assert _reads(gateway, "forged-" + second) == 401


def test_sessions_expire_on_the_server(tmp_path: Path) -> None:
    server = make_server(tmp_path / "gw")
    server.start()
    try:
        cookie = _cookie(_login(server))
        assert _reads(server, cookie) == 200
        # Twelve hours pass for the store's clock: the session's expiry is moved to now.
        with sqlite3.connect(server.db) as db:
            assert (
                db.execute("UPDATE inspector_sessions SET expires_at = ?", (time.time_ns() // 1_000_000,)).rowcount == 1
            )
        assert _reads(server, cookie) == 401
    finally:
        server.stop()


def test_a_new_admin_token_ends_every_session(tmp_path: Path) -> None:
    server = make_server(tmp_path / "gw")
    server.start()
    try:
        cookies = [_cookie(_login(server)) for _ in range(2)]
    finally:
        server.stop()
    server.config.write_text(DEFAULT_CONFIG.replace(ADMIN, "a-brand-new-admin-token"))
    server.start()
    try:
        assert [_reads(server, c) for c in cookies] == [401, 401]
        assert _reads(server, _cookie(_login(server, "a-brand-new-admin-token"))) == 200
    finally:
        server.stop()


def test_failed_logins_are_throttled_logged_and_journaled(fresh_server: Server) -> None:
    reader = _cookie(_login(fresh_server))  # the throttle holds back tokens, not live sessions
    statuses = []
    with fresh_server.client() as client:
        for _ in range(8):
            answer = client.post("/login", data={"token": GUESS})
            statuses.append(answer.status_code)
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        # The right token waits too: a throttle that the right guess skips tells the guesser.
        assert client.post("/login", data={"token": ADMIN}).status_code == 429
    time.sleep(0.5)  # journal entries are written in batches
    with fresh_server.client(cookies={"capigate_session": reader}) as admin:
        journal = admin.get("/api/requests", params={"limit": 50}).json()["requests"]
    logins = [r for r in journal if r["path"] == "/login"]
    assert sorted(r["status"] for r in logins) == [303] + [401] * 5 + [429] * 4, logins
    assert {p["code"] for r in logins for p in r["problems"]} == {"wrong_admin_token", "too_many_logins"}
    output = fresh_server.output()
    assert output.count("inspector login from 127.0.0.1 refused") == 9, output
    assert GUESS not in output and GUESS not in str(journal)


def test_wrong_admin_bearer_tokens_share_the_login_throttle(fresh_server: Server) -> None:
    """/api/* took any number of guesses while /login allowed 5 a minute: one counter now."""
    reader = _cookie(_login(fresh_server))
    wrong = {"Authorization": f"Bearer {GUESS}"}
    with fresh_server.client() as client:
        statuses = [client.post("/login", data={"token": GUESS}).status_code for _ in range(2)]
        statuses += [client.get("/api/events", headers=wrong).status_code for _ in range(2)]
        statuses.append(client.post("/login", data={"token": GUESS}).status_code)
        assert statuses == [401] * 5, statuses
        for path in ("/api/requests", "/api/sources", "/api/stats"):  # the inspector's API too
            answer = client.get(path, headers=wrong)
            assert answer.status_code == 429, (path, answer.text)
            assert 1 <= int(answer.headers["retry-after"]) <= 60
            assert answer.json()["error"] == "too_many_wrong_tokens"
        # The right token waits too, on either door: otherwise its answer tells the guesser.
        assert client.get("/api/events", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 429
        assert client.post("/login", data={"token": ADMIN}).status_code == 429
        assert client.get("/api/events").status_code == 401  # no token: nothing to throttle
    time.sleep(0.5)  # journal entries are written in batches
    with fresh_server.client(cookies={"capigate_session": reader}) as admin:
        answer = admin.get("/api/requests", params={"limit": 50, "api": "admin"})
    assert answer.status_code == 200, answer.text
    refused = answer.json()["requests"]
    assert sorted((r["path"], r["status"]) for r in refused) == [
        ("/api/events", 401),
        ("/api/events", 401),
        ("/api/events", 429),
        ("/api/requests", 429),
        ("/api/sources", 429),
        ("/api/stats", 429),
    ], refused
    assert {p["code"] for r in refused for p in r["problems"]} == {"wrong_admin_token", "too_many_wrong_tokens"}
    output = fresh_server.output()
    assert output.count("admin token from 127.0.0.1 refused") == 6, output
    assert GUESS not in output and GUESS not in str(refused)
    assert "Traceback" not in output
