"""The SQLite store's scattered dedupe keys: appended in order, moved into the index in key order.

The dedupe keys are a B-tree on (source, dedupe_id). Keys numbered in order land together at
its right edge; random ones (version 4 UUIDs, as many clients send) land each on a page of its
own, and a commit writes every page it changed whole into the WAL: ~900 pages a group of ~900
events once the index has a few thousand keys, and by a million keys the store kept under half
of its rate (docs/performance.md). So a group whose new keys are scattered (``scattered``)
appends them to ``dedupe_recent``, in id order (a few pages), and the writer keeps those keys
in memory for its lookups (~25 MB at ``FLUSH_KEYS``); once ``FLUSH_KEYS`` are there, they move
into ``dedupe_keys`` in key order, a sixteenth of the key range a group, a leaf written once
for all the keys it takes (``RecentKeys.flush_step``).

The table is the truth, the memory a copy. The writer reads the rows other writers appended
(``capigate serve --workers N`` on one file) before each lookup, starts anew when another's
flush deleted what it held (the table's smallest id says), and forgets everything when its
transaction is rolled back (``forget``): a key the memory holds and the table does not would
turn an event away as a duplicate. Ids come from AUTOINCREMENT, so a deleted id is never
handed out again to confuse a writer that has read it.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "BOUNDS",
    "DIRECT_AT",
    "FLUSH_KEYS",
    "RECENT_SCHEMA",
    "RecentKeys",
    "flush",
    "flush_older",
    "recent_keys",
    "scattered",
]

# A flush writes each leaf its keys land on once: at a million keys (16,000-23,000 leaves) about
# 0.2 pages a key, against ~1 written directly. It moves a sixteenth a group (flush_step): whole,
# it stalled its group for up to 1.4 s at a million keys (docs/performance.md).
FLUSH_KEYS: Final = 100_000
# Past this many keys in the index a flush writes nearly a page a key, as direct writes do, but
# all at once. A writer that finds the index this big writes its keys there directly.
DIRECT_AT: Final = 1_000_000
# Sample of a group's new keys that says whether they are scattered (scattered()).
_SAMPLE: Final = 64

RECENT_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS dedupe_recent (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        dedupe_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        seen_at INTEGER NOT NULL
    )""",
)

Key = tuple[str, str]

# The table's smallest and largest ids, for a SELECT of the ingest's own (sync reads them). Two
# subqueries: SQLite reads a lone min() or max() off the rowid's ends, but min() and max() in one
# SELECT off every row.
BOUNDS: Final = "(SELECT min(id) FROM dedupe_recent), (SELECT max(id) FROM dedupe_recent)"
_NEWER: Final = "SELECT id, source, dedupe_id FROM dedupe_recent WHERE id > ? ORDER BY id"
_INTO_INDEX: Final = (
    "INSERT OR IGNORE INTO dedupe_keys (source, dedupe_id, event_id, seen_at) "
    "SELECT source, dedupe_id, event_id, seen_at FROM dedupe_recent {} ORDER BY source, dedupe_id"
)
_FLUSH: Final = _INTO_INDEX.format("")  # every recent key
_MOVE: Final = _INTO_INDEX.format("WHERE id IN (SELECT value FROM json_each(?))")  # a chunk's
_CHUNKS: Final = 16
# The oldest time of all (at most FLUSH_KEYS rows, read at prune only): not the first row's,
# which a clock set back makes newer than later rows (a trial: their keys were never pruned).
_OLDEST: Final = "SELECT min(seen_at) FROM dedupe_recent"
_INDEXED: Final = "SELECT count(*) FROM (SELECT 1 FROM dedupe_keys LIMIT ?)"


class RecentKeys:
    """The keys of ``dedupe_recent`` as the writer last read or wrote them (key → row id), and
    the flush it is making. A flush deletes a prefix of the table's ids once all of it is in the
    index, so the copy holds the keys of ids ``_low`` … ``_upto`` with no gap."""

    __slots__ = ("_chunks", "_cycle_upto", "_indexed", "_keys", "_low", "_upto", "none_before")

    def __init__(self) -> None:
        self._keys: dict[Key, int] = {}
        self._low = 0  # the smallest id held (0: none)
        self._upto = 0  # the largest id read or written
        self._indexed: int | None = None  # keys in the index, counted up to DIRECT_AT at the first sync
        self._chunks: list[list[int]] = []  # the flush's chunks still to move: row ids, in key order
        self._cycle_upto = 0  # the flush's last id
        # (time, largest id): the table held no key seen before that time up to that id, as a
        # prune found (flush_older): ids only grow, so the next job of the prune reads no more.
        self.none_before: tuple[int, int] | None = None

    @property
    def direct(self) -> bool:
        """Whether this writer's new keys go straight into the index (it is too big to flush into)."""
        return self._indexed is not None and self._indexed >= DIRECT_AT

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def forget(self) -> None:
        """After a rollback, or another writer's flush: read it all again, start the flush anew."""
        self._keys.clear()
        self._low = self._upto = self._cycle_upto = 0
        self._chunks = []

    def sync(self, cur: sqlite3.Cursor, low: int | None, high: int | None) -> None:
        """Up to date with the table, in the writer's transaction; ``low`` and ``high``: its
        smallest and largest ids, read by the caller's first statement (BOUNDS)."""
        if self._indexed is None:
            (self._indexed,) = cur.execute(_INDEXED, (DIRECT_AT,)).fetchone()
        if low is None or high is None:  # empty: flushed (by any writer), or never written
            self.forget()
            return
        if self._keys and low > self._low:  # another writer's flush deleted what it held
            self.forget()
        if high > self._upto:
            keys = self._keys
            for row_id, source, dedupe_id in cur.execute(_NEWER, (self._upto,)):
                if not keys:
                    self._low = row_id
                keys[source, dedupe_id] = row_id
                self._upto = row_id

    def added(self, first_id: int, keys: Iterable[Key], count: int) -> None:
        """``count`` keys appended by this writer as ids ``first_id`` …, after every row it read."""
        if not self._keys:
            self._low = first_id
        self._keys.update(zip(keys, range(first_id, first_id + count), strict=True))
        self._upto = first_id + count - 1

    def flush_step(self, cur: sqlite3.Cursor) -> None:
        """A chunk of the flush into the index, a key range each (its own leaves): once
        FLUSH_KEYS keys are held, each ingest moves the next sixteenth, so no group waits for a
        whole flush; the last one deletes the ids moved. The copy changes only once a statement
        has run: a chunk that fails stays to do."""
        if not self._chunks:
            if len(self._keys) < FLUSH_KEYS:
                return
            ids = [row_id for _, row_id in sorted(self._keys.items())]
            size = -(-len(ids) // _CHUNKS)
            self._chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
            self._cycle_upto = self._upto
        moved = cur.execute(_MOVE, (json.dumps(self._chunks[0]),)).rowcount
        if self._indexed is not None:
            self._indexed += moved
        if len(self._chunks) == 1:
            cur.execute("DELETE FROM dedupe_recent WHERE id <= ?", (self._cycle_upto,))
            upto = self._cycle_upto
            self._keys = {key: row_id for key, row_id in self._keys.items() if row_id > upto}
            self._low = min(self._keys.values(), default=0)
        self._chunks.pop(0)


def recent_keys(cur: sqlite3.Cursor) -> RecentKeys:
    """The writer's copy; a connection of another kind gets a fresh one, read whole."""
    found = getattr(cur.connection, "recent_keys", None)  # a WriterConnection's (connection.py)
    return found if isinstance(found, RecentKeys) else RecentKeys()


def flush(cur: sqlite3.Cursor) -> int:
    """Moves every recent key into the index, in key order; how many moved. The writers'
    copies learn it from the emptied table (``RecentKeys.sync``)."""
    moved = cur.execute(_FLUSH).rowcount
    cur.execute("DELETE FROM dedupe_recent")
    return moved


def flush_older(cur: sqlite3.Cursor, before: int) -> None:
    """A flush if a recent key was seen before ``before`` (pruning then finds it in the index).
    The times are read whole (at most FLUSH_KEYS rows, a third of a prune job's time) once for
    a prune, and again only once a key was appended since."""
    (high,) = cur.execute("SELECT max(id) FROM dedupe_recent").fetchone()
    recent = recent_keys(cur)
    if high is None or recent.none_before == (before, high):
        return
    (oldest,) = cur.execute(_OLDEST).fetchone()
    if oldest is not None and oldest < before:
        flush(cur)
    else:
        recent.none_before = (before, high)


def scattered(values: list[Any]) -> bool:
    """Whether a group's new keys (``values``: source, dedupe_id, event id, time, …) would each
    land on a leaf of their own. Not if, in a sample of them, a source's ids mostly rise in the
    order they came (counters, timestamps: a few leaves at the right edge), nor if, sorted, they
    mostly share half of each id with the one before (one request's ids under a common token,
    as the bench's): those are written directly, cheaply, as are ids with no other id of their
    source in the sample to compare with. Random ones (version 4 UUIDs, hashes) go through the
    recent table."""
    count = len(values) // 4
    step = 4 * max(1, count // _SAMPLE)
    sample: list[tuple[str, str]] = list(zip(values[0::step], values[1::step], strict=True))
    last: dict[str, str] = {}
    rising: list[bool] = []
    for source, dedupe_id in sample:
        before = last.get(source)
        if before is not None:
            rising.append(before < dedupe_id)
        last[source] = dedupe_id
    near = [
        a[: len(b) // 2] == b[: len(b) // 2]
        for (source_a, a), (source_b, b) in itertools.pairwise(sorted(sample))
        if source_a == source_b
    ]
    return bool(rising) and not _mostly(rising) and not _mostly(near)


def _mostly(hits: list[bool]) -> bool:
    """Four in five or more."""
    return sum(hits) * 5 >= len(hits) * 4
