"""Several gateway nodes on one PostgreSQL database: real `capigate serve` processes sharing one
schema, as behind a load balancer. Duplicates sent to two nodes at the same instant are stored
once; each node's query API sees every node's data; relay work is shared without delivering an
event twice; and the leases of a node killed with kill -9 are finished by the other."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, make_server
from tests.helpers import all_pages, batch, page_view, stored_dedupe_ids, wait_until
from tests.storekit import PG_URL, pg_schema
from tests.upstream import Reply, Seen, Upstream

DEST = "axon:px_std"


@pytest.fixture
def schema() -> Iterator[str]:
    with pg_schema("capigate_nodes") as name:
        yield name


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def node(tmp: Path, schema: str, config: str = DEFAULT_CONFIG) -> Server:
    server = make_server(tmp, config)
    server.db = f"{PG_URL}?schema={schema}"
    return server


def relay_config(upstream_url: str, node_key: str, **relay: Any) -> str:
    """The default config with a relay on px_std; ``node_key`` is the key the upstream sees, so
    it can tell which node sent each request."""
    tuning = {"timeout_s": 1.0, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "poll_interval_s": 0.2, **relay}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in tuning.items())
    return f"""
[server]
admin_token = "{ADMIN}"
log_requests = false

[[axon.pixels]]
pixel_id = "px_std"
api_key = "key-std"
[axon.pixels.relay]
url = "{upstream_url}"
api_key = "{node_key}"
{lines}
"""


def post(client: httpx.Client, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": "key-std"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def journal_size(server: Server) -> int:
    return len(all_pages(server, "/api/requests", "requests", source="px_std"))


def sql(schema: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        return conn.execute(statement).fetchall()


def test_duplicates_sent_to_two_nodes_at_the_same_instant_are_stored_once(tmp_path: Path, schema: str) -> None:
    a, b = node(tmp_path / "a", schema), node(tmp_path / "b", schema)
    rounds, per_batch = 150, 5
    try:
        a.start()
        b.start()
        batches = [[page_view() for _ in range(per_batch)] for _ in range(rounds)]
        answers: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        barrier = threading.Barrier(2)

        def send(name: str, server: Server) -> None:
            with server.client() as client:
                for events in batches:
                    barrier.wait(timeout=10)  # both nodes get each batch at the same instant
                    answers[name].append(post(client, events))

        threads = [threading.Thread(target=send, args=item) for item in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        per_round = [
            (x["stored"] + y["stored"], x["duplicates"] + y["duplicates"])
            for x, y in zip(answers["a"], answers["b"], strict=True)
        ]
        assert per_round == [(per_batch, per_batch)] * rounds
        wins = Counter("a" if x["stored"] else "b" for x in answers["a"])
        assert wins["a"] > 0 and wins["b"] > 0, wins  # neither node was always first: a real race
        sent = {e["dedupe_id"] for events in batches for e in events}
        for server in (a, b):
            seen = stored_dedupe_ids(server)
            assert set(seen) == sent and max(seen.values()) == 1
    finally:
        a.stop()
        b.stop()


def test_each_node_answers_for_the_events_and_the_journal_of_every_node(tmp_path: Path, schema: str) -> None:
    a, b = node(tmp_path / "a", schema), node(tmp_path / "b", schema)
    try:
        a.start()
        b.start()
        to_a, to_b = [page_view() for _ in range(30)], [page_view() for _ in range(20)]
        with a.client() as ca, b.client() as cb:
            assert post(ca, to_a)["stored"] == 30
            assert post(cb, to_b)["stored"] == 20
        sent = {e["dedupe_id"] for e in to_a + to_b}
        for server in (a, b):
            assert set(stored_dedupe_ids(server)) == sent
        # The journal entry is written just after the answer: wait for both nodes' entries.
        wait_until(lambda: journal_size(a) == journal_size(b) == 2, timeout_s=10, what="both nodes' journal entries")
    finally:
        a.stop()
        b.stop()


def test_two_nodes_share_the_relay_and_deliver_each_event_once(tmp_path: Path, schema: str, upstream: Upstream) -> None:
    upstream.script = lambda seen: Reply(delay_s=0.05)  # slow enough that one node cannot keep up
    settings = {"batch_size": 10, "concurrency": 2}
    a = node(tmp_path / "a", schema, relay_config(upstream.url, "node-a", **settings))
    b = node(tmp_path / "b", schema, relay_config(upstream.url, "node-b", **settings))
    try:
        a.start()
        b.start()
        events = [page_view() for _ in range(600)]
        with a.client() as ca, b.client() as cb:
            for start in range(0, len(events), 50):
                post(ca if start % 100 == 0 else cb, events[start : start + 50])
        sent = {e["dedupe_id"] for e in events}
        upstream.wait_for(lambda: set(upstream.dedupe_ids()) == sent, timeout_s=60, what="every event upstream")
        delivered = Counter(upstream.dedupe_ids())
        assert max(delivered.values()) == 1, "an event was delivered twice"
        by_node = Counter(s.headers.get("authorization") for s in upstream.requests("/v1/event"))
        assert by_node["node-a"] > 0 and by_node["node-b"] > 0, by_node

        def settled() -> bool:  # the outcome of the last request is written just after its answer
            with b.admin() as c:
                [depth] = c.get("/api/outbox").json()["destinations"]
            return bool((depth["pending"], depth["delivered"], depth["dead"]) == (0, 600, 0))

        wait_until(settled, timeout_s=10, what="every outcome recorded")
    finally:
        a.stop()
        b.stop()


def test_the_leases_of_a_node_killed_with_kill_9_are_finished_by_the_other(
    tmp_path: Path, schema: str, upstream: Upstream
) -> None:
    hang = threading.Event()  # node a's requests never get an answer: it dies holding leases

    def script(seen: Seen) -> Reply | None:
        return Reply(hold=hang) if seen.headers.get("authorization") == "node-a" else None

    upstream.script = script
    # a's lease: 2 x timeout_s + 5 s = 11 s; it is killed while its request still waits.
    a = node(tmp_path / "a", schema, relay_config(upstream.url, "node-a", timeout_s=3.0))
    b = node(tmp_path / "b", schema, relay_config(upstream.url, "node-b"))
    try:
        a.start()
        events = [page_view() for _ in range(40)]
        with a.client() as ca:
            post(ca, events)
        sent = {e["dedupe_id"] for e in events}
        upstream.wait_for(
            lambda: set(upstream.dedupe_ids(answered_with=None)) == sent, timeout_s=10, what="a's request upstream"
        )
        leased = (
            "SELECT sum(last_id - first_id + 1)::int8 FROM outbox WHERE state = 'pending' AND lease_owner IS NOT NULL"
        )
        assert sql(schema, leased) == [(40,)]
        killed_at = time.monotonic()
        a.kill9()
        b.start()
        upstream.wait_for(lambda: set(upstream.dedupe_ids()) == sent, timeout_s=40, what="b to deliver a's events")
        assert time.monotonic() - killed_at > 3.0, "b took the events before a's lease expired"
        assert Counter(upstream.dedupe_ids()) == Counter(sent), "an event was delivered twice"
        assert {s.headers.get("authorization") for s in upstream.requests() if s.status == 200} == {"node-b"}
        with b.admin() as c:
            [depth] = c.get("/api/outbox").json()["destinations"]
        assert (depth["pending"], depth["delivered"]) == (0, 40)
    finally:
        hang.set()
        a.stop()
        b.stop()
