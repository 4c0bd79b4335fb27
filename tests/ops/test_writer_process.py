"""The SQLite writer process ([store] writer = "process", writer_process.py), faults reproduced
for real: its death mid-load, its parent's death by kill -9, signals sent to the whole group."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from capigate.errors import StoreError
from capigate.events import NewEvent
from capigate.store import SQLiteStore
from tests.conftest import Server, make_server
from tests.helpers import Load, batch, purchase, stored_and_journaled, wait_until, writer_of
from tests.storekit import close_loop, run


def _event(dedupe_id: str) -> NewEvent:
    return NewEvent(api="axon", source="px", name="purchase", event_time_ms=1, dedupe_id=dedupe_id, payload=b"{}")


def _writer_pid(store: SQLiteStore) -> int:
    child = store._writer._child  # type: ignore[union-attr]
    assert child is not None
    return child.proc.pid


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return True  # exited, not yet reaped by its (dead) parent's reaper
        time.sleep(0.05)
    return False


def test_a_killed_writer_process_fails_its_jobs_and_the_next_job_starts_another(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db", writer_process=True)
    try:
        run(store.open())
        assert run(store.ingest([_event("a")], request_id="r1", received_at_ms=1)).stored == 1
        first = _writer_pid(store)
        os.kill(first, signal.SIGSTOP)  # so that the next job is surely sent and not answered

        async def in_flight_when_killed() -> object:
            task = asyncio.ensure_future(store.ingest([_event("b")], request_id="r2", received_at_ms=1))
            await asyncio.sleep(0.3)
            os.kill(first, signal.SIGKILL)
            return await task

        with pytest.raises(StoreError, match="may or may not be stored"):
            run(in_flight_when_killed())
        assert _gone(first)
        result = run(store.ingest([_event("a"), _event("c")], request_id="r3", received_at_ms=1))
        assert (result.stored, result.duplicates) == (1, [0])  # "a" committed before the kill stays
        assert _writer_pid(store) != first
    finally:
        run(store.close())
        close_loop()


def test_a_writer_process_killed_while_idle_is_logged_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed with no write in flight (the OOM killer, an operator's kill), it left no trace:
    the next write started another, and nothing said the first had died."""
    store = SQLiteStore(tmp_path / "c.db", writer_process=True)
    try:
        run(store.open())
        assert run(store.ingest([_event("a")], request_id="r1", received_at_ms=1)).stored == 1
        first = _writer_pid(store)
        with caplog.at_level(logging.WARNING, logger="capigate.store"):
            os.kill(first, signal.SIGKILL)
            assert _gone(first)
            run(asyncio.sleep(0.5))  # the loop reads its end of file
            died = [r.getMessage() for r in caplog.records if "writer process" in r.getMessage()]
            assert died == [
                f"the store's writer process (pid {first}) ended (exit status -9); 0 write(s) sent to it failed "
                "(they may or may not be stored); the next write starts another"
            ], died
        assert run(store.ingest([_event("b")], request_id="r2", received_at_ms=1)).stored == 1
        assert _writer_pid(store) != first
    finally:
        caplog.clear()
        run(store.close())
        close_loop()
    assert not [r for r in caplog.records if "writer process" in r.getMessage()]  # a clean stop says nothing


_OWNER = textwrap.dedent(
    """
    import asyncio, sys
    from capigate.events import NewEvent
    from capigate.store import SQLiteStore

    async def main():
        store = SQLiteStore(sys.argv[1], writer_process=True)
        await store.open()
        events = [NewEvent(api="axon", source="px", name="n", event_time_ms=1, dedupe_id=f"d{i}", payload=b"{}")
                  for i in range(100)]
        await store.ingest(events, request_id="r", received_at_ms=1)
        print(store._writer._child.proc.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_the_writer_process_ends_when_its_gateway_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with subprocess.Popen([sys.executable, "-c", _OWNER, str(db)], stdout=subprocess.PIPE, text=True) as owner:
        try:
            assert owner.stdout is not None
            writer = int(owner.stdout.readline())
            os.kill(owner.pid, signal.SIGKILL)
            owner.wait(10)
            assert _gone(writer), "the writer process outlived its gateway"
        finally:
            owner.kill()
    store = SQLiteStore(db)
    try:
        run(store.open())
        assert run(store.ingest([_event("d1")], request_id="x", received_at_ms=1)).duplicates == [0]
    finally:
        run(store.close())
        close_loop()


def test_the_writer_process_ignores_a_signal_sent_to_the_whole_group(tmp_path: Path) -> None:
    """Ctrl-C in a terminal, or a service manager's stop, signals every process of the group:
    the writer must go on until its gateway has flushed and closes the pipe."""
    store = SQLiteStore(tmp_path / "c.db", writer_process=True)
    try:
        run(store.open())
        writer = _writer_pid(store)
        time.sleep(0.3)  # its handlers are set before it says it is ready; give slow machines slack
        os.kill(writer, signal.SIGINT)
        os.kill(writer, signal.SIGTERM)
        assert not _gone(writer, timeout_s=0.5)
        assert run(store.ingest([_event("a")], request_id="r", received_at_ms=1)).stored == 1
        assert _writer_pid(store) == writer
    finally:
        run(store.close())
        close_loop()
    assert _gone(writer)


def test_a_write_that_cannot_be_sent_to_the_writer_process_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db", writer_process=True)
    unsendable = NewEvent(
        api="axon",
        source="px",
        name="n",
        event_time_ms=1,
        dedupe_id="x",
        payload=b"{}",
        transaction_id=object(),  # type: ignore[arg-type]
    )

    async def both() -> tuple[object, object]:
        return await asyncio.gather(
            store.ingest([unsendable], request_id="bad", received_at_ms=1),
            store.ingest([_event("good")], request_id="good", received_at_ms=1),
            return_exceptions=True,
        )

    try:
        run(store.open())
        bad, good = run(both())
        assert isinstance(bad, TypeError)
        assert getattr(good, "stored", None) == 1
        assert run(store.ingest([_event("later")], request_id="later", received_at_ms=1)).stored == 1
    finally:
        run(store.close())
        close_loop()


def _stopped_writer(store: SQLiteStore) -> int:
    run(store.open())
    writer = _writer_pid(store)
    os.kill(writer, signal.SIGSTOP)  # as a debugger attached to it, or an operator's kill -STOP
    return writer


def test_a_stopped_writer_process_is_killed_so_writes_fail_rather_than_wait_for_ever(tmp_path: Path) -> None:
    """The writer thread's groups give up after the busy timeouts: a silent writer process
    owing answers is killed after them (twice busy_timeout_ms, and a margin), and the next
    write starts another."""
    store = SQLiteStore(tmp_path / "c.db", writer_process=True, busy_timeout_ms=250)
    try:
        stopped = _stopped_writer(store)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"did not answer within 2\.5 s and was killed"):
            run(asyncio.wait_for(store.ingest([_event("a")], request_id="r1", received_at_ms=1), 10))
        assert 2.5 <= time.monotonic() - started < 5
        assert _gone(stopped)
        result = run(store.ingest([_event("a")], request_id="r2", received_at_ms=1))
        assert result.stored + len(result.duplicates) == 1  # the first may or may not be stored
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)
        run(store.close())
        close_loop()


def _stop_the_next_writer(db: Path, old: int) -> list[int]:
    """SIGSTOPs the writer process that replaces ``old`` as soon as it appears, before it is
    ready (an interpreter's start takes a tenth of a second at least)."""
    stopped: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not stopped and time.monotonic() < deadline:
            for pid in _writer_processes(db):
                if pid != old:
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)

    threading.Thread(target=watch, daemon=True).start()
    return stopped


def test_a_writer_process_stopped_as_it_starts_is_killed_so_writes_and_the_stop_do_not_wait_for_ever(
    tmp_path: Path,
) -> None:
    """A new writer process that never says it is ready (stopped, hung as it starts) is
    killed after the same silence as a running one: every write waited on its start for
    ever, and so did the gateway's stop, leaving it stopped behind."""
    db = tmp_path / "c.db"
    store = SQLiteStore(db, writer_process=True, busy_timeout_ms=250)
    stopped: list[int] = []
    try:
        run(store.open())
        first = _writer_pid(store)
        stopped = _stop_the_next_writer(db, first)
        os.kill(first, signal.SIGKILL)
        assert _gone(first)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"did not start within 2\.5 s and was killed"):
            run(asyncio.wait_for(store.ingest([_event("a")], request_id="r1", received_at_ms=1), 10))
        assert 2.5 <= time.monotonic() - started < 5
        assert stopped and _gone(stopped[0])
        time.sleep(1)  # the pause before a failed start is tried again
        assert run(store.ingest([_event("a")], request_id="r2", received_at_ms=1)).stored == 1
        run(asyncio.wait_for(store.close(), 10))
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run(store.close())
        close_loop()


def test_closing_with_a_stopped_writer_process_ends_and_leaves_no_process(tmp_path: Path) -> None:
    """A stopped writer owes its exit once told to stop: without the kill, the gateway's stop
    waited for ever, and the orphan stayed stopped after the gateway was killed."""
    store = SQLiteStore(tmp_path / "c.db", writer_process=True, busy_timeout_ms=250)
    try:
        stopped = _stopped_writer(store)
        run(asyncio.wait_for(store.close(), 10))
        assert _gone(stopped, timeout_s=0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)
        close_loop()


def test_a_writer_process_that_cannot_start_again_is_retried_once_a_second_not_for_every_write(
    tmp_path: Path,
) -> None:
    """A new writer process costs an interpreter's start: on a broken store (its directory
    removed) each write started one, burning a core while writes failed. They fail at once
    with the start's error meanwhile; once the store is back, the next try succeeds."""
    directory = tmp_path / "db"
    directory.mkdir()
    store = SQLiteStore(directory / "c.db", writer_process=True)
    try:
        run(store.open())
        shutil.rmtree(directory)
        os.kill(_writer_pid(store), signal.SIGKILL)
        with pytest.raises(StoreError):  # the killed one's, or the new one's failed start
            run(store.ingest([_event("a")], request_id="r0", received_at_ms=1))
        with pytest.raises(StoreError, match="unable to open database file"):
            run(store.ingest([_event("a")], request_id="r1", received_at_ms=1))
        started = time.monotonic()
        for i in range(20):
            with pytest.raises(StoreError, match="unable to open database file"):
                run(store.ingest([_event("a")], request_id=f"r{i}", received_at_ms=1))
        assert time.monotonic() - started < 0.5, "a writer process was started for each write"
        directory.mkdir()
        time.sleep(1)
        assert run(store.ingest([_event("a")], request_id="back", received_at_ms=1)).stored == 1
    finally:
        run(store.close())
        close_loop()


def _writer_processes(db: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and f"writer_child\0{db}\0" in (entry / "cmdline").read_text():
                found.append(int(entry.name))
    return found


def test_ctrl_c_of_two_workers_under_load_stores_and_journals_every_acknowledged_event(tmp_path: Path) -> None:
    """SIGINT to the whole group (Ctrl-C): the writer processes ignore it, commit what their
    workers flush (the journal last), and end with them: none is left behind."""
    server = make_server(tmp_path / "gw", CAPIGATE_WORKERS="2")
    server.start()
    try:
        with Load(server, senders=4) as load:
            load.wait_for(400)
            writers = _writer_processes(Path(server.db))
            assert len(writers) == 2, writers
            server.stop(signal.SIGINT)
            assert server.proc is not None and server.proc.returncode == 0, server.output()[-2000:]
    finally:
        server.stop(signal.SIGKILL)
    assert all(_gone(pid, timeout_s=2) for pid in writers), "a writer process outlived its gateway"
    stored, journaled = stored_and_journaled(Path(server.db))
    assert [d for d in load.acked if d not in stored] == [] and max(stored.values()) == 1
    assert journaled == sum(stored.values())


def test_kill_9_of_one_worker_under_load_ends_its_writer_and_its_successor_writes(tmp_path: Path) -> None:
    """granian starts a new worker for the killed one: the killed one's writer process ends
    (its pipe closed) and lets go of the lock, the new worker's writer takes turns with the
    other's, and every acknowledged event is stored once."""
    server = make_server(tmp_path / "gw", CAPIGATE_WORKERS="2")
    server.start()
    try:
        with Load(server, senders=4) as load:
            load.wait_for(400)
            writers = {
                pid: int(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[1])
                for pid in _writer_processes(Path(server.db))
            }
            victim, victim_worker = next(iter(writers.items()))
            os.kill(victim_worker, signal.SIGKILL)
            assert _gone(victim), "the killed worker's writer process outlived it"
            wait_until(lambda: len(set(_writer_processes(Path(server.db))) - set(writers)) == 1, what="a new writer")
            before = len(load.acked)
            load.add(4)  # those whose connection was to the killed worker have ended
            load.wait_for(before + 400, what="load after the respawn")
    finally:
        server.stop()
    stored, _ = stored_and_journaled(Path(server.db))
    assert [d for d in load.acked if d not in stored] == [] and max(stored.values()) == 1


def test_an_ingest_unanswered_in_10_s_says_its_events_may_be_stored_for_they_may_be(tmp_path: Path) -> None:
    """The 503 after 10 s said the events could not be stored, yet a writer stopped for
    longer than that (and less than its 12 s) commits them once it runs again: a client
    that believed it and sent the events again without their dedupe_id stored them twice."""
    server = make_server(tmp_path)
    server.start()
    writer = 0
    try:
        wait_until(lambda: bool(_writer_processes(Path(server.db))), what="the writer process")
        (writer,) = _writer_processes(Path(server.db))
        os.kill(writer, signal.SIGSTOP)
        event = purchase()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post(
                "/v1/event", params={"pixel_id": "px_std"}, headers={"Authorization": "key-std"}, json=batch(event)
            )
        os.kill(writer, signal.SIGCONT)
        assert r.status_code == 503, r.text
        message = r.json()["message"]
        assert "did not answer within 10 s" in message and "may or may not be stored" in message
        assert "could not be stored" not in message, "it contradicted itself"

        def stored() -> bool:
            with contextlib.closing(sqlite3.connect(server.db)) as db:
                (count,) = db.execute(
                    "SELECT count(*) FROM events WHERE dedupe_id = ?", (event["dedupe_id"],)
                ).fetchone()
            return bool(count == 1)

        wait_until(stored, what="the events of the 503 committed once the writer ran again")
    finally:
        with contextlib.suppress(ProcessLookupError):
            if writer:
                os.kill(writer, signal.SIGCONT)
        server.stop()


def _ingest_while_the_writer_is_stopped(server: Server) -> httpx.Response:
    """An ingest sent while the store's writer process is stopped (SIGSTOP), resumed after."""
    assert server.proc is not None
    writer = writer_of(server.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    try:
        with server.client() as c:
            return c.post(
                "/v1/event", params={"pixel_id": "px_std"}, headers={"Authorization": "key-std"},
                json=batch(purchase()), timeout=30,
            )  # fmt: skip
    finally:
        os.kill(writer, signal.SIGCONT)


def test_readyz_is_ready_again_once_a_stalled_writer_answers_without_an_ingest(tmp_path: Path) -> None:
    """An ingest the store did not answer within 10 s (a writer stopped, a lock held) made the
    node unready; the write that proves the store answers again was never made on a node the
    load balancer took out, so it stayed unready for 30 s after the store was back (a trial on
    PostgreSQL: 28 s). A hang, unlike a refusal, ends with the probe's next write."""
    server = make_server(tmp_path / "gw")
    server.start()
    try:
        answer = _ingest_while_the_writer_is_stopped(server)
        resumed = time.monotonic()
        assert answer.status_code == 503 and "may or may not be stored" in answer.text, answer.text
        assert answer.headers["retry-after"] == "5"
        # a client repeats it only if a repeat is dropped (the SDK: a dedupe_id in each event)
        assert answer.json()["error"] == "store_unconfirmed", answer.text
        assert answer.headers["x-capigate-maybe-stored"] == "true"
        wait_until(lambda: httpx.get(server.url + "/readyz", timeout=5).status_code == 200, timeout_s=15, what="ready")
        assert time.monotonic() - resumed < 8
    finally:
        server.stop()


def test_a_request_waiting_on_a_stalled_store_is_answered_not_cut_as_idle(tmp_path: Path) -> None:
    """The idle sweep closed a connection quiet past idle_timeout_s while its request waited
    for the store: an empty reply where a 503 was due (a trial), and an ingest stored in the
    meantime lost its 200. A connection with a request in the app stays open however quiet."""
    from tests.conftest import DEFAULT_CONFIG

    server = make_server(tmp_path / "gw", DEFAULT_CONFIG.replace("[server]", "[server]\nidle_timeout_s = 1", 1))
    server.start()
    try:
        answer = _ingest_while_the_writer_is_stopped(server)
        assert answer.status_code == 503 and answer.json()["error"] == "store_unconfirmed", answer.text
    finally:
        server.stop()


_MEMORY_USED = """
import ctypes, sqlite3, sys, _sqlite3
from capigate.store.sqlite.memstatus import without_memory_statistics
turned_off = sys.argv[1] == "off" and without_memory_statistics()
conn = sqlite3.connect(sys.argv[2])
conn.execute("CREATE TABLE t (x TEXT)")
conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 1000)
conn.commit()
assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
used.restype = ctypes.c_int64
print(turned_off, used())
"""


@pytest.mark.parametrize("memstatus", ["on", "off"])
def test_sqlite_counts_no_memory_in_a_process_that_turned_it_off_first(tmp_path: Path, memstatus: str) -> None:
    """Rule (memstatus.py): on Linux, a process that opened no connection yet turns SQLite's
    memory statistics off (its writes unchanged), and SQLite then counts nothing: a global mutex
    less for each of its allocations."""
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_USED, memstatus, str(tmp_path / "m.db")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    turned_off, used = done.stdout.split()
    on_linux = sys.platform.startswith("linux")
    assert turned_off == str(memstatus == "off" and on_linux)
    assert (int(used) == 0) is (turned_off == "True"), used


def test_the_writer_process_turns_sqlites_memory_statistics_off(tmp_path: Path) -> None:
    """Rule: the writer process, which opens its connection itself, turns them off first (Linux)."""
    store = SQLiteStore(tmp_path / "c.db", writer_process=True)
    try:
        run(store.open())
        assert run(store.ingest([_event("a")], request_id="r1", received_at_ms=1)).stored == 1
        child = store._writer._child  # type: ignore[union-attr]
        assert child is not None
        assert child.memory_statistics is not sys.platform.startswith("linux")
    finally:
        run(store.close())
        close_loop()
