"""The SQLite database's files deleted or replaced under a running gateway (an operator's
`rm -rf` of its directory, a backup moved over it, the database moved away, its `-wal` taken
for a log), reproduced for real. The writer's open file lives on unlinked: a COMMIT into it is
stored in a file no restart opens. Before the fixes, every such write was answered 200 and
lost, and a restart read a restored backup with the replaced file's WAL."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from capigate.store.sqlite.writer import FILES_CHECK_S
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
        assert answers[0].headers["retry-after"] == "5"
        with server.client() as client:
            af = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}
            plain = client.post("/inappevent/com.example.shop", json=af, headers={"authentication": "af-dev-key"})
        assert (plain.status_code, plain.text, plain.headers["retry-after"]) == (503, "Service Unavailable", "5")
        ready = httpx.get(server.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and "deleted or replaced" in ready.text, ready.text
    finally:
        server.stop()
    # the refused requests' entries (and any taken before) waited for a store that never came back
    said = re.search(r"(\d+) journal entries could not be written before the stop and are lost", server.output())
    assert said is not None and int(said[1]) >= 3, server.output()[-2000:]


def _backup(db: Path, to: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as source, contextlib.closing(sqlite3.connect(to)) as target:
        source.backup(target)


def _intact(db: Path) -> bool:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return bool(conn.execute("PRAGMA integrity_check").fetchone() == ("ok",))


def _backup_then_more(server: Server, db: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An event, a backup (backup.db beside the database), then 30 events the backup lacks, in
    the live file and its WAL."""
    kept = purchase()
    assert _ingest(server, kept).status_code == 200
    _backup(db, db.with_name("backup.db"))
    replaced = [purchase() for _ in range(30)]
    for event in replaced:
        assert _ingest(server, event).status_code == 200
    return kept, replaced


def _assert_the_backup(db: Path, kept: dict[str, Any], lost: list[dict[str, Any]]) -> None:
    """``db`` is the backup as it was: no WAL of the replaced file beside it, intact, ``kept``
    there and none of ``lost``."""
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the replaced file's WAL is left for the backup"
    assert _intact(db)
    stored = _stored_ids(db)
    assert kept["dedupe_id"] in stored and not stored & {e["dedupe_id"] for e in lost}


@pytest.mark.parametrize("then", ["a write", "a stop at once"])
@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_file_moved_over_the_database_is_refused_and_opened_intact_after_a_restart(
    tmp_path: Path, writer: str, then: str
) -> None:
    """A backup restored by moving it over the live file (a new user's trial): the writes after
    it are refused, and the restarted gateway finds the backup as it was. SQLite keeps the WAL
    of a file that moved (its close neither copies it back nor deletes it), and the next open
    read the backup with it: the old file's events appeared in it, or a malformed database."""
    server = _served(tmp_path, writer)
    db = Path(server.db)
    try:
        kept, replaced = _backup_then_more(server, db)
        db.with_name("backup.db").replace(db)
        late = purchase()
        if then == "a write":
            answer = _ingest(server, late)
            assert answer.status_code == 503 and "deleted or replaced" in answer.text, answer.text
    finally:
        server.stop()
    _assert_the_backup(db, kept, [*replaced, late])
    server.start()  # and it serves from the backup
    try:
        again = purchase()
        assert _ingest(server, again).status_code == 200
    finally:
        server.stop()
    assert _intact(db) and _stored_ids(db) >= {kept["dedupe_id"], again["dedupe_id"]}


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_an_idle_writer_finds_a_restored_backup_before_a_crash_would_spoil_it(tmp_path: Path, writer: str) -> None:
    """The second trial's case: a backup moved over the live file, then kill -9 before any write.
    Only the readiness probe's write (every 2 s) found it: the old file's 41 MB WAL was left and
    read with the backup at the next start (`btreeInitPage() returns error code 11`). An idle
    writer checks its files every FILES_CHECK_S (0.25 s)."""
    server = _served(tmp_path, writer)
    db = Path(server.db)
    try:
        kept, replaced = _backup_then_more(server, db)
        time.sleep(0.5)  # their journal entries written (every 50 ms): no write is coming
        db.with_name("backup.db").replace(db)
        time.sleep(3 * FILES_CHECK_S)  # the probe writes every 2 s: it may come first, or not
    finally:
        server.kill9()
    _assert_the_backup(db, kept, replaced)


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_database_moved_away_keeps_every_event_acknowledged_before_the_move(tmp_path: Path, writer: str) -> None:
    """`mv capigate.db elsewhere.db` under a running gateway: the events answered 200 before the
    move are in the moved file, though their pages were still in the WAL, which keeps the old
    name; the writes after it are refused."""
    server = _served(tmp_path, writer)
    db = Path(server.db)
    moved = db.with_name("elsewhere.db")
    events = [purchase() for _ in range(30)]
    try:
        for event in events:
            assert _ingest(server, event).status_code == 200
        db.rename(moved)
        answer = _ingest(server, purchase())
        assert answer.status_code == 503 and "deleted or replaced" in answer.text, answer.text
    finally:
        server.stop()
    assert not Path(f"{moved}-wal").exists() and _intact(moved)
    assert _stored_ids(moved) >= {e["dedupe_id"] for e in events}


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_deleted_wal_refuses_the_writes_after_it_and_loses_none_before_it(
    tmp_path: Path, writer: str, suffix: str
) -> None:
    """`rm capigate.db-wal` (taken for a log) under a running gateway: SQLite went on committing
    into the unlinked WAL, and at a kill -9 lost what no checkpoint had copied into the
    database yet: every event, and the young database's schema with them. The writes after it
    are refused; every event answered 200 is in the database. A deleted `-shm` (the WAL's index,
    which a new reader would make anew beside the writer's) is refused alike."""
    server = _served(tmp_path, writer)
    db = Path(server.db)
    before = [purchase() for _ in range(20)]
    try:
        for event in before:
            assert _ingest(server, event).status_code == 200
        Path(f"{db}{suffix}").unlink()
        after = [_ingest(server, purchase()) for _ in range(3)]
        assert [a.status_code for a in after] == [503] * 3, [a.text for a in after]
        assert f"{db}{suffix} was deleted or replaced" in after[0].text, after[0].text
    finally:
        server.kill9()
    assert _intact(db) and _stored_ids(db) >= {e["dedupe_id"] for e in before}


def _copy_over(source: Path, target: Path) -> None:
    """``cp source target``: the target's file kept (same inode), its bytes replaced."""
    with source.open("rb") as src, target.open("r+b") as dst:
        dst.truncate(0)
        shutil.copyfileobj(src, dst)


def _checkpoint(db: Path) -> tuple[int, int]:
    """A PASSIVE checkpoint: the WAL's frames, and how many of them are in the file now."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, copied


def _grown_seen_and_quiet(server: Server, db: Path, backup_size: int) -> None:
    """Until the file is larger than the backup, the writer has seen it so, and no WAL frame is
    left that a checkpoint could copy into the file after it changes. On a loaded runner a fixed
    wait did not do: the writer had not looked at the grown file yet, or the checkpointer copied
    a late journal flush into the shrunk file and grew it back (CI: 200 where 503 was due)."""
    deadline = time.monotonic() + 30
    while _checkpoint(db) and db.stat().st_size <= backup_size:  # the checkpointer, sooner
        assert time.monotonic() < deadline, f"{db} never grew past the backup's {backup_size:,} bytes"
        time.sleep(0.1)
    assert _ingest(server, purchase()).status_code == 200  # its COMMIT's check reads the grown size
    last = (-1, -1)
    while (now := _checkpoint(db)) != last or now[0] != now[1]:  # every frame copied, none new
        assert time.monotonic() < deadline, f"{db}'s WAL never went quiet: {now}"
        last = now
        time.sleep(0.3)


@pytest.mark.parametrize("how", ["truncate", "cp backup over it"])
@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_database_file_shrunk_in_place_refuses_the_writes_after_it(tmp_path: Path, writer: str, how: str) -> None:
    """A file changed in place keeps its identity: `truncate -s` of the live file, or `cp
    backup.db capigate.db` over it (an older, smaller copy). SQLite went on committing into what
    was left, answered 200 with `/readyz` 200, and those events were lost. SQLite never shrinks
    the file here: a smaller file refuses the writes after it (the idle check, FILES_CHECK_S, or
    the next COMMIT's), and `/readyz` says why."""
    server = _served(tmp_path, writer)
    db = Path(server.db)
    try:
        _backup_then_more(server, db)
        _grown_seen_and_quiet(server, db, db.with_name("backup.db").stat().st_size)
        if how == "truncate":
            os.truncate(db, db.stat().st_size // 2)
        else:
            _copy_over(db.with_name("backup.db"), db)
        time.sleep(3 * FILES_CHECK_S)
        answer = _ingest(server, purchase())
        assert answer.status_code == 503 and "shrank" in answer.text, answer.text
        ready = httpx.get(server.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and "copied over in place" in ready.text, ready.text
    finally:
        server.kill9()
