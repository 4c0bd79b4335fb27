"""The journal buffer (capigate/http/journal.py) on a real store: what a read of the journal
can count on once the buffer is caught up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from capigate.http.journal import JournalBuffer, may_wait_elsewhere, new_request_id
from capigate.store.base import RequestRecord, Store
from tests.storekit import run


def entry(request_id: str) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, received_at=time.time_ns() // 1_000_000, api="axon", source="px_std",
        method="POST", path="/v1/event", status=200, client_ip=None, user_agent=None, latency_ms=1.0,
    )  # fmt: skip


def test_caught_up_waits_for_the_flush_under_way_not_only_for_what_is_left(make_store: Callable[[], Store]) -> None:
    """The flusher had taken the entries and was writing them: a look-up's flush found the
    buffer empty, returned at once, and the store did not have the entry yet."""
    store = make_store()

    async def scenario() -> list[bool]:
        await store.open()
        journal = JournalBuffer(store)
        found = []
        try:
            for _ in range(20):
                request_id = new_request_id()
                journal.add(entry(request_id))
                under_way = asyncio.ensure_future(journal.flush())  # as the flusher's
                await asyncio.sleep(0)  # it has taken the entry and waits on the store
                await journal.caught_up()
                found.append(await store.query_request(request_id) is not None)
                await under_way
        finally:
            await store.close()
        return found

    assert run(scenario()) == [True] * 20


def test_only_a_recent_id_of_another_process_may_still_wait_in_its_buffer() -> None:
    now_ns = time.time_ns()
    mine = new_request_id()
    theirs = f"{now_ns - 1_000_000_000:x}abcdef0001"  # another process's, a second old
    old = f"{now_ns - 600 * 1_000_000_000:x}abcdef0001"
    assert may_wait_elsewhere(theirs, now_ns)
    assert not may_wait_elsewhere(mine, now_ns)  # this process's buffer is written before the read
    assert not may_wait_elsewhere(old, now_ns)
    assert not may_wait_elsewhere("0123456789abcdef", now_ns)  # hand-typed: from 1970
    assert not may_wait_elsewhere("abc", now_ns)


def test_a_stop_during_the_flushers_write_loses_none_of_its_entries(make_store: Callable[[], Store]) -> None:
    """The stop cancelled the flusher while it wrote: the entries it had taken from the buffer
    were in no list the last flush saw, and on PostgreSQL (whose write starts a task per entry
    on the loop's next turn) a cancel that came first lost them. The stop now waits for the
    write under way."""
    store = make_store()

    async def scenario() -> list[bool]:
        await store.open()
        journal = JournalBuffer(store, max_records=1)  # an entry wakes the flusher at once
        found = []
        try:
            for _ in range(10):
                journal.start()
                request_id = new_request_id()
                journal.add(entry(request_id))
                while journal.waiting:  # until the flusher has taken it and waits on the store
                    await asyncio.sleep(0)
                await journal.stop()
                found.append(await store.query_request(request_id) is not None)
        finally:
            await store.close()
        return found

    assert run(scenario()) == [True] * 10
