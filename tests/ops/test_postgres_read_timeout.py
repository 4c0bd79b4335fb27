"""A PostgreSQL read that the server never answers (its backend stopped, or a connection a
partition left open and silent) fails after [store] read_timeout_s: the admin API answers 503
saying so instead of holding the request for ever, and the next read takes a new connection.
Writes have had their answer timeout (test_journal_partition.py); the read pool had none."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_CONFIG, make_server
from tests.helpers import batch, purchase
from tests.ops.partition import partition
from tests.storekit import pg_schema

pytestmark = pytest.mark.postgresql  # scripts/test-fast leaves it out: it needs the server

READ_TIMEOUT_S = 2.0
CONFIG = DEFAULT_CONFIG + f"\n[store]\nread_timeout_s = {READ_TIMEOUT_S:g}\n"
# Only query_events sends this: the read that goes unanswered, not the writers' statements.
EVENTS_READ = b"FROM events e LEFT JOIN LATERAL"


def test_a_read_the_server_never_answers_is_a_503_saying_so_and_the_next_read_answers(tmp_path: Path) -> None:
    with pg_schema() as schema, partition(("127.0.0.1", 5432)) as network:
        server = make_server(tmp_path / "gw", CONFIG)
        server.db = f"postgresql://postgres@127.0.0.1:{network.port}/test?schema={schema}"
        server.start()
        try:
            with server.client() as client:
                stored = client.post(
                    "/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"}
                )
            assert stored.status_code == 200, stored.text
            network.silence_before(EVENTS_READ)
            started = time.monotonic()
            with server.admin() as admin:
                answer = admin.get("/api/events", timeout=READ_TIMEOUT_S + 20)
            took_s = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["error"] == "store_unavailable", body
            assert f"PostgreSQL did not answer within {READ_TIMEOUT_S:g} s" in body["message"], body
            assert READ_TIMEOUT_S <= took_s < READ_TIMEOUT_S + 5, took_s
            with server.admin() as admin:
                again = admin.get("/api/events", timeout=10)
            assert again.status_code == 200, again.text
            assert len(again.json()["events"]) == 1
        finally:
            server.stop()
