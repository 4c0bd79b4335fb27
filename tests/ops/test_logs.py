"""Logs an operator can trust (issue #17): a client's value never forges a log line, and in
``log_format = "json"`` every line the server writes is one JSON object."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import DEFAULT_CONFIG, Server, make_server
from tests.helpers import batch, purchase
from tests.storekit import PG_URL, pg_schema

FORGED = "2026-01-01 00:00:00,000 INFO capigate FORGED"
_LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
_JSON_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


def _send_forgeries(server: Server) -> None:
    with server.client() as client:
        client.post("/v1/event", params={"pixel_id": f"px\n{FORGED}"}, json=batch(purchase()))
        client.post(f"/inappevent/app%0A{FORGED.replace(' ', '%20')}", content=b"{}")
        client.post(
            "/v1/event",
            params={"pixel_id": "px_std"},
            headers={"Authorization": "key-std", "X-Capigate-Test": "tag\twith controls"},
            json=batch(purchase()),
        )
        client.post("/v1/event%0D%0Afake", content=b"{}")
    time.sleep(0.5)  # request lines are written in batches, at most 0.1 s late


def _wait_for(server: Server, text: str) -> str:
    deadline = time.monotonic() + 10
    while text not in server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.output()


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path / "gw")
    srv.start()
    yield srv
    srv.stop()


def test_control_characters_in_logged_fields_are_escaped(plain_server: Server) -> None:
    """Rule: every logged field has its control characters escaped (capigate/logs.py)."""
    _send_forgeries(plain_server)
    out = _wait_for(plain_server, "controls")
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01 00:00:00,000")], out
    forged = [line for line in lines if "FORGED" in line]
    assert len(forged) >= 2, out  # the pixel_id's and the app id's lines, each whole
    for line in forged:
        assert _LINE_START.match(line) and "\\n2026-01-01" in line, line
    tagged = [line for line in lines if "test=tag" in line]
    assert tagged == [tagged[0]] and "test=tag\\twith controls" in tagged[0], out


def _json_config(extra: str = "") -> str:
    return DEFAULT_CONFIG.replace("[server]\n", '[server]\nlog_format = "json"\n', 1) + extra


def _assert_all_json(out: str) -> list[dict[str, object]]:
    records = []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- whole output:\n{out}")
        assert isinstance(record, dict) and _JSON_TIME.fullmatch(str(record["time"])), line
        records.append(record)
    return records


def test_json_mode_writes_only_json_lines(tmp_path: Path) -> None:
    """In the JSON format, the banner, granian's lines and the request lines are JSON,
    with a time in milliseconds and a UTC offset."""
    server = make_server(tmp_path / "gw", _json_config())
    server.start()
    try:
        _send_forgeries(server)
    finally:
        server.stop()
    records = _assert_all_json(server.output())
    loggers = {str(r["logger"]) for r in records}
    assert {"capigate.serve", "_granian", "capigate.requests"} <= loggers, loggers
    forged = [r for r in records if "FORGED" in str(r["message"]) or "FORGED" in json.dumps(r.get("request"))]
    assert forged, records


def test_json_mode_psycopg_lines_are_json(tmp_path: Path) -> None:
    """psycopg's own lines (a pool whose connections the database closed) are JSON too."""
    app_name = f"capigate_logs_{tmp_path.name[-20:]}"
    with pg_schema() as schema:
        server = make_server(tmp_path / "gw", _json_config())
        server.db = f"{PG_URL}?schema={schema}&application_name={app_name}"
        server.start()
        try:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                    (app_name,),
                ).fetchone()
            assert killed and killed[0] > 0
            with server.client() as client:
                for _ in range(5):
                    with contextlib.suppress(httpx.TransportError):
                        client.post(
                            "/v1/event",
                            params={"pixel_id": "px_std"},
                            headers={"Authorization": "key-std"},
                            json=batch(purchase()),
                        )
            _wait_for(server, '"psycopg')
        finally:
            server.stop()
    records = _assert_all_json(server.output())
    assert any(str(r["logger"]).startswith("psycopg") for r in records), records
