"""A job PostgreSQL ends for a conflict with another transaction, run again.

The outbox's jobs take their row locks in ``first_id`` order (outbox.py, runs.py), so two of
them never wait for each other in a cycle. A lock that something else holds (a prune, an
operator's session) can still close one, and PostgreSQL then ends one transaction of it with
``DeadlockDetected`` (or ``SerializationFailure`` at a stricter isolation level). That
transaction was rolled back, nothing of it stays, so the job runs again: a few times, after a
short random pause so the two sides do not meet again in step. Logged once per job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import psycopg.errors

from capigate.retry import backoff_s

__all__ = ["CONFLICTS", "TRIES", "retried"]

log = logging.getLogger("capigate.store")

T = TypeVar("T")

CONFLICTS: Final = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
TRIES: Final = 4
_BASE_S: Final = 0.02
_MAX_S: Final = 0.5


async def retried(what: str, job: Callable[[], Awaitable[T]]) -> T:
    """``job()``, run again while PostgreSQL ends it for a conflict, up to ``TRIES`` runs;
    ``job`` must be one transaction (or one statement in autocommit)."""
    for run in range(1, TRIES + 1):
        try:
            return await job()
        except CONFLICTS as exc:
            if run == TRIES:
                raise
            if run == 1:
                log.warning("%s: %s; running it again", what, str(exc).partition("\n")[0] or type(exc).__name__)
            await asyncio.sleep(backoff_s(run, base_s=_BASE_S, max_s=_MAX_S))
    raise AssertionError("unreachable")  # the last run returns or raises
