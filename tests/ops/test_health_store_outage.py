"""A PostgreSQL outage (issue #17), reproduced with a real network partition between the
gateway and its database: /metrics and the admin API answer at once, and the requests refused
meanwhile reach the journal when the database is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import DEFAULT_CONFIG, Server, make_server
from tests.helpers import batch, purchase
from tests.ops.partition import partition
from tests.storekit import pg_schema

# px_std relays to a loopback port where nothing listens: its events stay pending, so the
# queue-depth series exist.
CONFIG = DEFAULT_CONFIG.replace(
    'profile = "standard"\n', 'profile = "standard"\n\n[axon.pixels.relay]\nurl = "http://127.0.0.1:9"\n', 1
)
DEPTH = 'capigate_relay_queue_depth{destination="axon:px_std",state="pending"}'


def ingest(server: Server, timeout: float = 30.0) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/event",
        params={"pixel_id": "px_std"},
        headers={"Authorization": "key-std"},
        json=batch(purchase()),
        timeout=timeout,
    )


def scrape(server: Server) -> str:
    answer = httpx.get(server.url + "/metrics", timeout=3.0)  # a scrape never waits on the store
    assert answer.status_code == 200
    return answer.text


def wait_for(server: Server, text: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while text not in (metrics := scrape(server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert text in metrics, metrics
    return metrics


def test_metrics_and_admin_api_answer_at_once_and_refusals_are_journaled(tmp_path: Path) -> None:
    with pg_schema() as schema, partition(("127.0.0.1", 5432)) as network:
        server = make_server(tmp_path / "gw", CONFIG)
        server.db = f"postgresql://postgres@127.0.0.1:{network.port}/test?schema={schema}"
        server.start()
        try:
            assert ingest(server).status_code == 200
            wait_for(server, DEPTH)
            network.cut()
            metrics = wait_for(server, "capigate_store_up 0")
            assert DEPTH in metrics  # the last figures, not a vanished series
            age = next(line for line in metrics.splitlines() if line.startswith("capigate_store_figures_age_seconds"))
            assert float(age.split()[1]) > 0
            with server.admin() as admin:
                answer = admin.get("/api/requests", timeout=3.0)
            assert answer.status_code == 503 and answer.json()["error"] == "store_unavailable", answer.text
            ready = httpx.get(server.url + "/readyz", timeout=5.0)
            assert ready.status_code == 503, ready.text
            refused = [ingest(server) for _ in range(3)]
            assert [r.status_code for r in refused] == [503] * 3
            network.heal()
            wait_for(server, "capigate_store_up 1", timeout_s=30)
            journal: list[dict[str, object]] = []
            answers: list[int] = []  # told on failure: a reader that could not reconnect, or no entries
            # The writers and the read pool reconnect with their own pauses (the pool's grow
            # after each failed attempt of the partition): on a loaded machine, tens of seconds.
            deadline = time.monotonic() + 45
            with server.admin() as admin:
                while time.monotonic() < deadline:
                    answer = admin.get("/api/requests", params={"status": 503})
                    answers.append(answer.status_code)
                    journal = answer.json()["requests"] if answer.status_code == 200 else []
                    if len(journal) >= 3:
                        break
                    time.sleep(0.3)
            assert len([r for r in journal if r["path"] == "/v1/event"]) == 3, (journal, sorted(set(answers)))
        finally:
            server.stop()
