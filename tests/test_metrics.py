"""GET /metrics (Prometheus), /healthz, /readyz, and the request log lines, for operators."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from capigate.errors import Problem
from capigate.metrics import Metrics
from capigate.store import OutboxDepth, RequestRecord
from tests.conftest import DEFAULT_CONFIG, Server, free_port, make_server
from tests.helpers import batch, purchase

SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, for every sample line; every line must parse."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        out[match[1] + (match[2] or "")] = float(match[3])
    return out


def record(path: str, status: int, source: str | None, **kw: object) -> RequestRecord:
    return RequestRecord(
        request_id="r",
        received_at=0,
        api="axon",
        source=source,
        method="POST",
        path=path,
        status=status,
        client_ip=None,
        user_agent=None,
        latency_ms=3.0,
        **kw,  # type: ignore[arg-type]
    )


def metrics(**kw: object) -> Metrics:
    return Metrics(sources=["px_a"], **kw)  # type: ignore[arg-type]


def test_counters_by_endpoint_status_source_and_outcome() -> None:
    m = metrics()
    warn = Problem("events[0].dedupe_id", "missing_dedupe_id", "x")
    m.observe_record(
        "/v1/event",
        record("/v1/event", 200, "px_a", events_received=3, events_stored=2, events_duplicate=1, warnings=[warn]),
    )
    m.observe_record("/v1/event", record("/v1/event", 400, "px_a", events_received=5))
    m.observe_record("/v1/event", record("/v1/event", 401, "px_unknown_attacker_chosen", events_received=1))
    m.observe_record(
        "/inappevent/{app_id}", record("/inappevent/com.x.y", 200, None, events_received=1, events_stored=1)
    )
    m.observe_record("other", record("/wp-login.php", 404, None))
    m.observe_request("/healthz", 200, 0.2)
    got = samples(m.exposition(None, 0).decode())
    assert got['capigate_requests_total{endpoint="/v1/event",status="200"}'] == 1
    assert got['capigate_requests_total{endpoint="/v1/event",status="400"}'] == 1
    assert got['capigate_requests_total{endpoint="/inappevent/{app_id}",status="200"}'] == 1
    assert got['capigate_requests_total{endpoint="other",status="404"}'] == 1  # labels stay bounded
    assert got['capigate_requests_total{endpoint="/healthz",status="200"}'] == 1
    assert got['capigate_events_total{source="px_a",outcome="accepted"}'] == 2
    assert got['capigate_events_total{source="px_a",outcome="duplicate"}'] == 1
    assert got['capigate_events_total{source="px_a",outcome="refused"}'] == 5
    assert got['capigate_events_total{source="unknown",outcome="refused"}'] == 1
    assert got['capigate_events_total{source="unknown",outcome="accepted"}'] == 1
    assert got['capigate_warnings_total{source="px_a",code="missing_dedupe_id"}'] == 1
    assert not any("attacker" in k for k in got)
    assert got['capigate_request_duration_seconds_bucket{endpoint="/v1/event",le="0.0025"}'] == 0
    assert got['capigate_request_duration_seconds_bucket{endpoint="/v1/event",le="0.005"}'] == 3
    assert got['capigate_request_duration_seconds_bucket{endpoint="/v1/event",le="+Inf"}'] == 3
    assert got['capigate_request_duration_seconds_count{endpoint="/v1/event"}'] == 3
    assert got['capigate_request_duration_seconds_sum{endpoint="/v1/event"}'] == 0.009


def test_relay_attempts_and_queue_depths() -> None:
    m = metrics()
    m.observe_relay_attempt("axon:px_a", "delivered", 120.0)
    m.observe_relay_attempt("axon:px_a", "retry", 30.0)
    depths = [OutboxDepth(destination='axon:"q"', pending=7, dead=2, delivered=9, oldest_pending_at=1_000)]
    got = samples(m.exposition(depths, 61_000).decode())
    assert got['capigate_relay_attempts_total{destination="axon:px_a",result="delivered"}'] == 1
    assert got['capigate_relay_attempt_duration_seconds_count{destination="axon:px_a"}'] == 2
    assert got['capigate_relay_queue_depth{destination="axon:\\"q\\"",state="pending"}'] == 7
    assert got['capigate_relay_queue_depth{destination="axon:\\"q\\"",state="dead"}'] == 2
    assert got['capigate_relay_oldest_pending_age_seconds{destination="axon:\\"q\\""}'] == 60


def test_workers_share_their_counters_through_files(tmp_path: Path) -> None:
    mine, other = metrics(share_dir=tmp_path), metrics(share_dir=tmp_path)
    mine.observe_request("/healthz", 200, 1.0)
    other.observe_request("/healthz", 200, 1.0)
    other.observe_request("/healthz", 200, 1.0)
    # Both run in this process here: give the other worker's file the pid of a live process.
    other.flush()
    (tmp_path / f"worker-{os.getpid()}.msgpack").rename(tmp_path / f"worker-{os.getppid()}.msgpack")
    (tmp_path / "worker-999999999.msgpack").write_bytes(b"from a worker that is gone")
    got = samples(mine.exposition(None, 0).decode())
    assert got['capigate_requests_total{endpoint="/healthz",status="200"}'] == 3
    assert not (tmp_path / "worker-999999999.msgpack").exists()  # a dead worker's file is removed


def test_a_running_gateway_exposes_metrics_health_and_readiness(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        assert (
            c.post(
                "/v1/event?pixel_id=px_std", json=batch(purchase(), purchase()), headers={"Authorization": "key-std"}
            ).status_code
            == 200
        )
        assert (
            c.post("/v1/event?pixel_id=px_std", json={"events": []}, headers={"Authorization": "key-std"}).status_code
            == 400
        )
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["store"] == "writable"
        scrape = c.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(scrape.text)
    assert got['capigate_requests_total{endpoint="/v1/event",status="200"}'] == 1
    assert got['capigate_requests_total{endpoint="/v1/event",status="400"}'] == 1
    assert got['capigate_requests_total{endpoint="/healthz",status="200"}'] == 1
    assert got['capigate_events_total{source="px_std",outcome="accepted"}'] == 2
    assert got['capigate_request_duration_seconds_count{endpoint="/v1/event"}'] == 2


def test_two_workers_report_every_request_whichever_answers_the_scrape(tmp_path: Path) -> None:
    config = DEFAULT_CONFIG.replace("[server]\n", "[server]\nworkers = 2\n")
    srv = make_server(tmp_path / "gw", config, CAPIGATE_METRICS_DIR=str(tmp_path / "metrics"))
    srv.start()
    try:
        n = 40
        for _ in range(n):  # new connections, so that both workers get some
            with srv.client() as c:
                c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"})
        time.sleep(1.5)  # every worker has flushed since
        for _ in range(6):
            with srv.client() as c:
                got = samples(c.get("/metrics").text)
            assert got['capigate_events_total{source="px_std",outcome="accepted"}'] == n
        assert len(list((tmp_path / "metrics").glob("worker-*.msgpack"))) == 2
    finally:
        srv.stop()


def test_one_json_log_line_per_request_without_pii(tmp_path: Path) -> None:
    config = DEFAULT_CONFIG.replace("[server]\n", '[server]\nlog_format = "json"\n')
    srv = make_server(tmp_path / "gw", config)
    srv.start()
    try:
        event = purchase()
        event["user_data"].update(
            email="Jane.Doe@Example.com", phone="+1 (415) 555-0123", client_ip_address="198.51.100.23"
        )
        wrong = purchase()
        wrong["user_data"]["email"] = "jane@@example"
        agent = "log-test/1.0"
        with srv.client(headers={"User-Agent": agent}) as c:
            assert (
                c.post("/v1/event?pixel_id=px_std", json=batch(event), headers={"Authorization": "key-std"}).status_code
                == 200
            )
            assert (
                c.post("/v1/event?pixel_id=px_std", json=batch(wrong), headers={"Authorization": "key-std"}).status_code
                == 400
            )
        time.sleep(0.3)
    finally:
        srv.stop()
    output = srv.output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == "capigate.requests"]
    assert [r["request"]["status"] for r in requests] == [200, 400]
    assert requests[1]["request"]["problems"][0]["code"] == "invalid_email"
    logged = "\n".join(line for line in output.splitlines() if line.startswith("{"))  # not the start-up banner
    for secret in ("jane", "Jane", "4155550123", "415) 555", "key-std", "198.51.100.23"):
        assert secret not in logged, secret


def test_plain_log_line_per_request(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        c.post("/v1/event?pixel_id=px_std", json={"events": []}, headers={"Authorization": "key-std"})
    time.sleep(0.2)
    line = next(line for line in fresh_server.output().splitlines() if "capigate.requests POST /v1/event 400" in line)
    assert "source=px_std events=0" in line and "problems=1 first=events:" in line


def test_plain_log_line_of_a_request_naming_no_source_says_so_with_a_dash(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        assert c.post("/login", data={"token": "not-the-token"}).status_code in (401, 403)
        assert c.post("/v1/event", json={"events": []}).status_code == 400  # no pixel_id
    time.sleep(0.2)
    lines = [line for line in fresh_server.output().splitlines() if "capigate.requests POST" in line]
    assert len(lines) == 2 and all(" source=- events=0" in line for line in lines), lines
    assert not any("None" in line for line in lines), lines


def test_readiness_lists_the_relay_workers_of_the_process(tmp_path: Path) -> None:
    upstream = f"http://127.0.0.1:{free_port()}"  # nothing listens: the worker runs and retries
    config = DEFAULT_CONFIG.replace(
        'profile = "standard"\n', f'profile = "standard"\nrelay = {{ url = "{upstream}", api_key = "k" }}\n', 1
    )
    srv = make_server(tmp_path / "gw", config)
    srv.start()
    try:
        with srv.client() as c:
            ready = c.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "store": "writable", "relay": {"axon:px_std": "running"}}
            event = batch(purchase())
            assert (
                c.post("/v1/event?pixel_id=px_std", json=event, headers={"Authorization": "key-std"}).status_code == 200
            )
            got = samples(c.get("/metrics").text)
        assert got['capigate_relay_queue_depth{destination="axon:px_std",state="pending"}'] == 1
        assert got['capigate_relay_oldest_pending_age_seconds{destination="axon:px_std"}'] < 60
    finally:
        srv.stop()
