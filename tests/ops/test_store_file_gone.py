"""The SQLite database deleted or replaced under a running gateway (an operator's `rm -rf` of
its directory, a backup moved over it), reproduced for real. The writer's open file lives on
unlinked: a COMMIT into it is stored in a file no restart opens. Before the fix, every such
write was answered 200 and lost when the process ended."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_CONFIG, Server, make_server
from tests.helpers import batch, purchase


def _served(tmp_path: Path, writer: str) -> Server:
    data = tmp_path / "data"
    data.mkdir()
    config = DEFAULT_CONFIG.replace("[[axon.pixels]]", f'[store]\nwriter = "{writer}"\n\n[[axon.pixels]]', 1)
    server = make_server(tmp_path / "gw", config)
    server.db = data / "capigate.db"
    server.start()
    return server


def _ingest(server: Server, event: dict[str, object]) -> httpx.Response:
    with server.client() as client:
        return client.post(
            "/v1/event", params={"pixel_id": "px_std"}, headers={"Authorization": "key-std"}, json=batch(event)
        )


def _stored_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT dedupe_id FROM events")}


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_writes_after_the_database_directory_was_deleted_are_refused(tmp_path: Path, writer: str) -> None:
    server = _served(tmp_path, writer)
    try:
        assert _ingest(server, purchase()).status_code == 200
        shutil.rmtree(tmp_path / "data")
        answers = [_ingest(server, purchase()) for _ in range(3)]
        assert [a.status_code for a in answers] == [503] * 3, [a.text for a in answers]
        assert "deleted or replaced" in answers[0].text and str(server.db) in answers[0].text, answers[0].text
        ready = httpx.get(server.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and "deleted or replaced" in ready.text, ready.text
    finally:
        server.stop()


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_writes_after_another_file_was_moved_over_the_database_are_refused(tmp_path: Path, writer: str) -> None:
    server = _served(tmp_path, writer)
    db = Path(server.db)
    try:
        kept = purchase()
        assert _ingest(server, kept).status_code == 200
        copy = db.with_name("copy.db")
        with contextlib.closing(sqlite3.connect(db)) as source, contextlib.closing(sqlite3.connect(copy)) as target:
            source.backup(target)
        copy.replace(db)  # as a restore of a backup would
        late = purchase()
        answer = _ingest(server, late)
        assert answer.status_code == 503 and "deleted or replaced" in answer.text, answer.text
    finally:
        server.stop()
    assert kept["dedupe_id"] in _stored_ids(db) and late["dedupe_id"] not in _stored_ids(db)
