"""A full disk under SQLite (issue #17), reproduced on a real, small tmpfs: /readyz tells the
truth, and the requests refused meanwhile reach the journal once the disk has room again."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_CONFIG, Server, make_server
from tests.helpers import batch, purchase

DISK_MB = 4


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK_MB`` MiB mounted at ``path`` (mounting needs root: the tests run as root)."""
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"a full disk is reproduced on a small tmpfs, which needs root: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 512)
    return filler


def ingest(server: Server) -> httpx.Response:
    with server.client() as client:
        return client.post(
            "/v1/event", params={"pixel_id": "px_std"}, headers={"Authorization": "key-std"}, json=batch(purchase())
        )


def _config(journal_buffer: int) -> str:
    return DEFAULT_CONFIG.replace(
        "[[axon.pixels]]", f"[store]\njournal_buffer = {journal_buffer}\n\n[[axon.pixels]]", 1
    )


@pytest.fixture
def on_small_disk(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    with small_disk(tmp_path / "disk") as disk:
        server = make_server(tmp_path / "gw", _config(journal_buffer=8))
        server.db = disk / "capigate.db"
        server.start()
        try:
            yield server, disk
        finally:
            server.stop()


def _refused_until_full(server: Server) -> list[httpx.Response]:
    answers = [ingest(server) for _ in range(30)]
    refused = [a for a in answers if a.status_code == 503]
    assert refused, [a.status_code for a in answers]
    # Rule: an ingest's 503 says when to try again, as /api's does (a trial found none)
    assert all(a.headers.get("retry-after") == "5" for a in refused), refused[0].headers
    return refused


def test_readyz_is_unavailable_while_ingests_fail_on_a_full_disk(on_small_disk: tuple[Server, Path]) -> None:
    server, disk = on_small_disk
    assert ingest(server).status_code == 200
    filler = fill(disk)
    refused = _refused_until_full(server)
    assert "full" in refused[-1].text, refused[-1].text
    ready = httpx.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 503, ready.text
    assert "full" in ready.text, ready.text  # the probe's failure or the last ingest's, named
    filler.unlink()
    deadline = time.monotonic() + 10
    while ingest(server).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200


def test_readyz_recovers_soon_after_the_disk_has_room_without_an_ingest(on_small_disk: tuple[Server, Path]) -> None:
    """A load balancer sends no events to a node it took out: /readyz alone must see the room
    come back, not wait out the 30 s a failed ingest is remembered (it did: 30.0 s)."""
    server, disk = on_small_disk
    filler = fill(disk)
    _refused_until_full(server)
    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 503
    filler.unlink()
    freed = time.monotonic()
    while (ready := httpx.get(server.url + "/readyz", timeout=5)).status_code != 200 and time.monotonic() < freed + 5:
        time.sleep(0.2)
    assert ready.status_code == 200, f"{ready.text} {time.monotonic() - freed:.1f} s after the disk had room"


def test_requests_refused_during_the_outage_reach_the_journal_afterwards(on_small_disk: tuple[Server, Path]) -> None:
    server, disk = on_small_disk
    filler = fill(disk)
    refused = _refused_until_full(server)  # 30 requests, 8 kept in memory, the rest dropped
    time.sleep(2.5)  # the watcher's next probe (every 2 s)
    metrics = httpx.get(server.url + "/metrics", timeout=5).text
    assert "capigate_store_up 0" in metrics and "capigate_journal_waiting 8" in metrics, metrics
    dropped = 30 - 8
    assert f"capigate_journal_dropped_total {dropped}" in metrics, metrics
    filler.unlink()
    journal: list[dict[str, object]] = []
    deadline = time.monotonic() + 15
    with server.admin() as admin:
        while time.monotonic() < deadline:
            answer = admin.get("/api/requests", params={"limit": 100})
            if answer.status_code == 200:
                journal = answer.json()["requests"]
                if len(journal) >= 9:
                    break
            time.sleep(0.3)
    statuses = [r["status"] for r in journal if r["path"] == "/v1/event"]
    assert statuses.count(503) == 8 and len(refused) <= 30, journal
    overflow = [r for r in journal if r["path"] == "(journal)"]
    assert len(overflow) == 1 and f"{dropped} journal entries were dropped" in str(overflow[0]["problems"]), journal
    assert os.path.exists(server.db)


def test_readyz_is_unavailable_on_an_immutable_wal(tmp_path: Path) -> None:
    """The issue's second case: a WAL file made immutable (chattr +i) refuses every write."""
    server = make_server(tmp_path / "gw")
    server.start()
    wal = Path(f"{server.db}-wal")
    try:
        assert ingest(server).status_code == 200
        subprocess.run(["chattr", "+i", str(wal)], check=True)
        try:
            assert ingest(server).status_code == 503
            ready = httpx.get(server.url + "/readyz", timeout=5)
            assert ready.status_code == 503, ready.text
        finally:
            subprocess.run(["chattr", "-i", str(wal)], check=True)
    finally:
        server.stop()


def test_an_ingest_refused_on_a_full_disk_is_found_by_its_dedupe_ids(on_small_disk: tuple[Server, Path]) -> None:
    """The journal leaves a stored event's dedupe id to the store (kept.dedupe_ids_not_stored),
    but an ingest that failed stored none: its entry keeps the keys of its body, as any refused
    request's, and is found by each id once journaled."""
    server, disk = on_small_disk
    filler = fill(disk)
    events = [purchase(), purchase()]
    for _ in range(5):  # a few tries: a full disk may still take a write in a page it has
        with server.client() as client:
            answer = client.post("/v1/event?pixel_id=px_std", headers={"Authorization": "key-std"}, json=batch(*events))
        if answer.status_code == 503:
            break
        events = [purchase(), purchase()]
    assert answer.status_code == 503, answer.text
    filler.unlink()
    deadline = time.monotonic() + 15
    found: list[dict[str, object]] = []
    with server.admin() as admin:
        while not found and time.monotonic() < deadline:
            time.sleep(0.3)
            reply = admin.get("/api/requests", params={"dedupe_id": events[1]["dedupe_id"]})
            found = reply.json()["requests"] if reply.status_code == 200 else []
    assert [r["status"] for r in found] == [503], found
