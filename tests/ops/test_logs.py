"""Logs an operator can trust (issue #17): a client's value never forges a log line, and in
``log_format = "json"`` every line the server writes is one JSON object."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from capigate.errors import Problem
from capigate.logs import (
    REQUEST_LOGGER,
    BatchingStreamHandler,
    JSONFormatter,
    PlainFormatter,
    configure_logging,
    log_request,
)
from capigate.responses import RequestRecord
from capigate.store import JournalRecord
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


def test_control_characters_in_logged_fields_are_escaped(fresh_server: Server) -> None:
    """Rule: every logged field has its control characters escaped (capigate/logs.py)."""
    _send_forgeries(fresh_server)
    out = _wait_for(fresh_server, "controls")
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01 00:00:00,000")], out
    forged = [line for line in lines if "FORGED" in line]
    assert len(forged) >= 2, out  # the pixel_id's and the app id's lines, each whole
    for line in forged:
        assert _LINE_START.match(line) and "\\n2026-01-01" in line, line
    # A tag with a control character is refused now (events.tag_refusal), never logged as a tag.
    assert not [line for line in lines if "test=tag" in line or "\t" in line], out


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


# --- the request line written without a logging record (capigate/logs.py log_request) -------

_REQUESTS = [
    RequestRecord(
        request_id="r1", received_at=1, api="axon", source="px_std", method="POST", path="/v1/event",
        status=200, client_ip="127.0.0.1", user_agent="ua", latency_ms=1.005, events_received=1, events_stored=1,
    ),
    RequestRecord(
        request_id="r2", received_at=1, api="appsflyer", source=None, method="POST", path="/inappevent/a\nb",
        status=400, client_ip=None, user_agent=None, latency_ms=12.5, events_received=2, events_duplicate=1,
        problems=[Problem("events[0].\x1b", "wrong_type", "m"), Problem("x", "y", "z")],
        warnings=[Problem("a", "plain_pii_hashed", "m")], test_tag="tag\twith controls",
    ),
]  # fmt: skip


def _journaled(request: RequestRecord) -> JournalRecord:
    """The request as a journal entry keeping a body and keys (which no log line shows)."""
    fields = msgspec.structs.asdict(request)
    return JournalRecord(**fields, body=b'{"secret-body":1}', keys=[("dedupe_id", "secret-key")])


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def request_lines() -> Iterator[io.StringIO]:
    """capigate's handler on the ``capigate`` logger, as configure_logging sets it, writing to a
    string; the loggers' state is put back after."""
    capigate = logging.getLogger("capigate")
    saved = (capigate.handlers[:], capigate.propagate, capigate.level, capigate.filters[:])
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    capigate.handlers[:] = [handler]
    capigate.propagate = False
    capigate.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        capigate.handlers[:], capigate.propagate, _, capigate.filters[:] = saved
        capigate.setLevel(saved[2])


@pytest.mark.parametrize("formatter", [PlainFormatter(), JSONFormatter()], ids=["plain", "json"])
@pytest.mark.parametrize("request_record", _REQUESTS, ids=["accepted", "refused"])
@pytest.mark.parametrize("journaled", [False, True], ids=["request", "journal-entry"])
def test_request_line_is_the_line_of_its_logging_record(
    formatter: PlainFormatter | JSONFormatter, request_record: RequestRecord, journaled: bool
) -> None:
    """Rule: log_request writes what the formatter makes of the logging record it stands for;
    of a journal entry, the line shows the request, never the body or keys kept beside it."""
    record = logging.getLogger(REQUEST_LOGGER).makeRecord(
        REQUEST_LOGGER, logging.INFO, "", 0, "%s %s %d %.2fms",
        (request_record.method, request_record.path, request_record.status, request_record.latency_ms),
        None, extra={"capigate": request_record},
    )  # fmt: skip
    logged = _journaled(request_record) if journaled else request_record
    line = formatter.request_line(record.created, logged)
    assert line == formatter.format(record)
    assert "secret" not in line


def test_log_request_writes_the_line_into_capigates_handler(request_lines: io.StringIO) -> None:
    """Rule: with configure_logging's set-up, the request line goes to capigate's handler as is."""
    before = time.time()
    log_request(_REQUESTS[1])
    logging.getLogger("capigate").handlers[0].flush()
    line = request_lines.getvalue()
    assert line.endswith(
        " INFO capigate.requests POST /inappevent/a\\nb 400 12.50ms source=- events=2 stored=0 dup=1"
        ' problems=2 first=events[0].\\x1b:wrong_type warnings=1 test="tag\\twith controls"\n'
    ), line
    logged_at = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
    assert int(before) - 1 <= logged_at <= time.time()


def test_log_request_goes_through_logging_when_a_filter_or_level_says_otherwise(request_lines: io.StringIO) -> None:
    """Rule: a filter, a level or another handler on the way still decides (no line written around them)."""
    capigate = logging.getLogger("capigate")
    capigate.setLevel(logging.WARNING)
    log_request(_REQUESTS[0])
    capigate.setLevel(logging.INFO)
    handler = capigate.handlers[0]
    handler.addFilter(lambda record: record.getMessage().startswith("GET"))
    log_request(_REQUESTS[0])
    handler.filters.clear()
    other = _Kept()
    capigate.addHandler(other)
    log_request(_journaled(_REQUESTS[0]))
    handler.flush()
    assert [r.capigate for r in other.records] == [_REQUESTS[0]]  # type: ignore[attr-defined]  # without body, keys
    assert request_lines.getvalue().count("\n") == 1  # only the last call's line, through logging


def _log_a_request_then_end(stderr_path: str) -> None:
    """A worker's last moments: capigate's logging on its stderr, a request line, the end."""
    sys.stderr = open(stderr_path, "w")  # noqa: SIM115  # the child's stderr, for as long as it lives
    configure_logging("plain")
    log_request(_REQUESTS[0])


def test_a_worker_process_writes_its_last_request_lines_as_it_ends(tmp_path: Path) -> None:
    """A granian worker is a multiprocessing child: it ends with os._exit, which skips logging's
    flush at exit, and the lines its batching handler still held (the last 0.1 s: the requests
    drained as it stopped) never reached stderr, while the journal had them."""
    stderr = tmp_path / "stderr"
    child = multiprocessing.get_context("fork").Process(target=_log_a_request_then_end, args=(str(stderr),))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert " INFO capigate.requests POST " in stderr.read_text(), stderr.read_text()


def test_bidirectional_controls_are_escaped_in_log_lines() -> None:
    """A source id with U+202E reversed the rest of its log line on a terminal (a trial)."""
    from capigate.logs import escape_control

    assert escape_control("px_\u202edemo") == "px_\\u202edemo"
    assert escape_control("a\u2066b\u200fc") == "a\\u2066b\\u200fc"
    assert escape_control("שלום") == "שלום"  # right-to-left letters stay


def test_invisible_format_characters_are_escaped_as_controls_are() -> None:
    """An AppsFlyer eventName "af_purchase" + U+200B (a zero-width space) was stored and shown
    exactly as the real name (a re-trial): every format character (Unicode category Cf: the
    zero-width space, the BOM, the word joiner, the soft hyphen, the tags; not the joiners) is
    escaped in a log line and named by ``control_characters``, as a bidirectional control
    is; one beyond U+FFFF with eight digits (Python's \\U), so that no escape reads as a
    shorter one and a digit. Visible text stays, in any script."""
    import unicodedata

    from capigate.logs import control_characters, escape_control

    assert escape_control("af_purchase\u200b") == "af_purchase\\u200b"
    assert escape_control("\ufeffaf_x\u2060\u00ad") == "\\ufeffaf_x\\u2060\\xad"
    assert escape_control("a\u200ec\U000e0041") == "a\\u200ec\\U000e0041"
    assert control_characters("af_x\ufeff\u200b\ufeff") == ["\\ufeff", "\\u200b"]
    # the joiners, in words (Persian "mi-kh") and emoji (a family), rewrite nothing: kept
    for visible in ("注文_完了 ü", "שלום", "🎉 café", "x\\u200by", "\u0645\u06cc\u200c\u062e", "👨\u200d👩\u200d👧"):
        assert escape_control(visible) == visible and control_characters(visible) == []
    formats = [c for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf" and c not in (0x200C, 0x200D)]
    for c in formats:
        want = f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"
        assert escape_control(f"a{chr(c)}b") == f"a{want}b", hex(c)
        assert control_characters(chr(c)) == [want], hex(c)
