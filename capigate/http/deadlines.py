"""Time limits on a request's awaits, at the cost of a dict entry each instead of a timer each.

``asyncio.timeout`` arms and cancels a timer per use, about 5 µs with its context manager;
an ingest request used two (its body, its store write), a twentieth of a one-event request's
CPU. These limits guard against a client trickling its body and a store that stopped
answering, and need keeping only to within ``SWEEP_S``: one sweep per event loop, while any
limit is armed, cancels the tasks past theirs.

    async with within(10.0):  # TimeoutError past 10 s (give or take SWEEP_S), as asyncio.timeout
        await store.ingest(...)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

__all__ = ["SWEEP_S", "cut_short", "is_cut_short", "limited", "within"]

SWEEP_S = 0.1
T = TypeVar("T")


class _Sweeper:
    """The limits armed on one event loop; a timer runs only while there are some."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[within, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.cut_at: float | None = None  # cuttable limits end by then (cut_short)

    def arm(self, limit: within, limit_s: float) -> None:
        due = self.loop.time() + limit_s
        if limit.cuttable and self.cut_at is not None:
            due = min(due, self.cut_at)
        self.due[limit] = due
        if self._timer is None:
            self._timer = self.loop.call_later(SWEEP_S, self._sweep)

    def cut(self, limit_s: float) -> None:
        cut_at = self.loop.time() + limit_s
        if self.cut_at is not None:
            cut_at = min(cut_at, self.cut_at)  # cut again (a stopping worker orphaned): the sooner holds
        self.cut_at = cut_at
        for limit, due in self.due.items():
            if limit.cuttable:
                self.due[limit] = min(due, cut_at)  # swept by the timer that runs while any is armed

    def _sweep(self) -> None:
        now = self.loop.time()
        for limit, due in list(self.due.items()):
            if due <= now and not limit.expired:
                limit.expired = True
                limit.task.cancel()
        self._timer = self.loop.call_later(SWEEP_S, self._sweep) if self.due else None


_SWEEPERS: WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = WeakKeyDictionary()


def _sweeper(loop: asyncio.AbstractEventLoop) -> _Sweeper:
    global _last
    if _last is None or _last.loop is not loop:  # nearly always one loop: no weakref made per use
        _last = _SWEEPERS.get(loop) or _SWEEPERS.setdefault(loop, _Sweeper(loop))
    return _last


_last: _Sweeper | None = None


def cut_short(loop: asyncio.AbstractEventLoop, limit_s: float) -> None:
    """Every cuttable limit on ``loop`` (a body still arriving), armed or to come, ends within
    ``limit_s``: a stopping worker waits for its requests in flight, and one trickling its body
    held it to the end of ``body_timeout_s`` (30 s), past a service manager's patience."""
    _sweeper(loop).cut(limit_s)


def is_cut_short(loop: asyncio.AbstractEventLoop) -> bool:
    return _sweeper(loop).cut_at is not None


class within:
    """``async with within(limit_s)``: TimeoutError when the block runs past ``limit_s``.
    ``task``: the current task, when the caller has it at hand (asyncio.current_task is
    Python code in 3.11)."""

    __slots__ = ("cuttable", "expired", "limit_s", "sweeper", "task")

    task: asyncio.Task[Any]
    sweeper: _Sweeper

    def __init__(self, limit_s: float, task: asyncio.Task[Any] | None = None, *, cuttable: bool = False) -> None:
        self.limit_s = limit_s
        self.expired = False
        self.cuttable = cuttable
        if task is not None:
            self.task = task

    async def __aenter__(self) -> None:
        self._arm()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._disarm(kind):
            raise TimeoutError from exc

    def _arm(self) -> None:
        try:
            task = self.task
        except AttributeError:
            current = asyncio.current_task()
            assert current is not None, "within() is used inside a task"
            task = self.task = current
        self.sweeper = _sweeper(task.get_loop())
        self.sweeper.arm(self, self.limit_s)

    def _disarm(self, kind: type[BaseException] | None) -> bool:
        """Withdraws the limit; True when the block ended cancelled by it: told as a timeout
        (as asyncio.timeout does)."""
        del self.sweeper.due[self]
        return self.expired and self.task.uncancel() == 0 and kind is asyncio.CancelledError


async def limited(
    awaitable: Awaitable[T], limit_s: float, task: asyncio.Task[Any] | None = None, *, cuttable: bool = False
) -> T:
    """``await awaitable`` inside ``async with within(limit_s, task)``, as one coroutine instead
    of three: a one-event request awaits two limits, at a fortieth of its CPU with ``within``."""
    limit = within(limit_s, task, cuttable=cuttable)
    limit._arm()
    try:
        result = await awaitable
    except BaseException as exc:
        if limit._disarm(type(exc)):
            raise TimeoutError from exc
        raise
    limit._disarm(None)
    return result
