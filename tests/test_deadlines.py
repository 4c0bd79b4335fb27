"""capigate.http.deadlines: the request's time limits, kept by one sweep per loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from capigate.http.deadlines import SWEEP_S, _sweeper, cut_short, is_cut_short, limited, within


def test_a_block_past_its_limit_raises_timeout_error_within_a_sweep() -> None:
    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with within(0.2):
                await asyncio.sleep(5)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert 0.2 <= took < 0.2 + SWEEP_S + 0.3


def test_a_block_within_its_limit_is_left_alone_and_the_task_not_cancelled_later() -> None:
    async def main() -> str:
        async with within(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)  # past the limit and a sweep: nothing is cancelled
        return "done"

    assert asyncio.run(main()) == "done"


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def guarded() -> None:
        async with within(10):
            await asyncio.sleep(5)

    async def main() -> None:
        task = asyncio.create_task(guarded())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_many_tasks_and_nested_limits_each_keep_their_own() -> None:
    async def one(limit: float, inner: float | None) -> str:
        try:
            async with within(limit):
                if inner is None:
                    await asyncio.sleep(1)
                else:
                    async with within(inner):
                        await asyncio.sleep(1)
        except TimeoutError:
            return "timeout"
        return "done"

    async def main() -> list[str]:
        return list(await asyncio.gather(one(0.1, None), one(5, 0.1), one(0.1, 5), one(5, None)))

    started = time.monotonic()
    assert asyncio.run(main()) == ["timeout", "timeout", "timeout", "done"]
    assert time.monotonic() - started < 1.5


def test_limited_is_within_for_one_await() -> None:
    """Rule: ``limited(aw, s)`` answers as ``async with within(s): await aw`` does: the result,
    TimeoutError past the limit, an outside cancellation as a cancellation; no limit left armed."""

    async def value() -> str:
        await asyncio.sleep(0)
        return "value"

    async def cancelled_from_outside() -> None:
        task = asyncio.create_task(limited(asyncio.sleep(5), 10))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def main() -> tuple[str, float]:
        assert await limited(value(), 0.05) == "value"
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await limited(asyncio.sleep(5), 0.2)
        took = time.monotonic() - started
        await cancelled_from_outside()
        await asyncio.sleep(0.3)  # past the first limit and a sweep: nothing is cancelled
        assert not _sweeper(asyncio.get_running_loop()).due
        return "done", took

    done, took = asyncio.run(main())
    assert done == "done" and 0.2 <= took < 0.2 + SWEEP_S + 0.3


def test_cut_short_ends_the_cuttable_limits_armed_and_to_come_and_leaves_the_others() -> None:
    """A stopping worker's bodies still arriving (cuttable) end within the cut; an ingest's
    limit keeps its own."""

    async def waits(limit_s: float, cuttable: bool) -> str:
        try:
            await limited(asyncio.sleep(2.0), limit_s, cuttable=cuttable)
        except TimeoutError:
            return "cut"
        return "done"

    async def main() -> tuple[list[str], float, bool]:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        armed = [asyncio.create_task(waits(30.0, cuttable)) for cuttable in (True, False)]
        await asyncio.sleep(0)
        cut_short(loop, 0.2)
        later = asyncio.create_task(waits(30.0, True))
        done = await asyncio.gather(*armed, later)
        return done, time.monotonic() - started, is_cut_short(loop)

    done, took, cut = asyncio.run(main())
    assert done == ["cut", "done", "cut"] and cut
    assert took < 2.0 + SWEEP_S + 0.5
