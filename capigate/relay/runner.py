"""Start and stop the relay workers of a configuration, one per destination.

``RelayRunner`` runs inside ``capigate serve`` (started and stopped by the app's lifespan) and
alone as ``capigate relay``. Its lease owner id is host + pid + a random part, so leases of a
crashed process are told apart from a restarted one's: they expire and are claimed again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Mapping

from capigate.config import Config
from capigate.errors import StoreError
from capigate.relay.destinations import Target, targets
from capigate.relay.worker import STOP_GRACE_S, AttemptHook, DestinationWorker, WorkerStats
from capigate.store.base import Store

__all__ = ["RelayRunner", "new_owner"]

log = logging.getLogger("capigate.relay")


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class RelayRunner:
    """The relay of one process. ``start()`` needs an opened store; ``stop()`` drains."""

    def __init__(
        self,
        store: Store,
        config: Config | None = None,
        *,
        destinations: list[Target] | None = None,
        owner: str | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        """Relays the ``config``'s enabled relays (ConfigError if a key cannot be resolved),
        or the ``destinations`` given."""
        found = destinations if destinations is not None else targets(config) if config is not None else []
        self.store = store
        self.owner = owner or new_owner()
        self.workers: dict[str, DestinationWorker] = {
            t.name: DestinationWorker(store, t, owner=self.owner, on_attempt=on_attempt) for t in found
        }
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def stats(self) -> Mapping[str, WorkerStats]:
        return {name: worker.stats for name, worker in self.workers.items()}

    async def start(self) -> None:
        for name, worker in self.workers.items():
            task = asyncio.create_task(worker.run(), name=f"capigate-relay {name}")
            task.add_done_callback(self._exited)
            self._tasks.append(task)
        if self.workers:
            log.info(
                "relay %s: %s", self.owner, ", ".join(f"{w.name} -> {w.target.url}" for w in self.workers.values())
            )

    def running(self) -> dict[str, bool]:
        """Whether each destination's worker is running (for /readyz)."""
        alive = {task.get_name() for task in self._tasks if not task.done()}
        return {name: f"capigate-relay {name}" in alive for name in self.workers}

    def on_attempt(self, hook: AttemptHook | None) -> None:
        """Call ``hook(destination, result, latency_ms)`` after each upstream request."""
        for worker in self.workers.values():
            worker.on_attempt = hook

    def wake(self, destination: str) -> None:
        """Events for ``destination`` were just committed: look now, not at the next poll."""
        worker = self.workers.get(destination)
        if worker is not None:
            worker.wake()

    def stopping(self, grace_s: float = STOP_GRACE_S) -> None:
        """Claim nothing more; the requests in flight get ``grace_s`` to be answered, then are
        cut short (a shorter grace than an earlier call's holds). On the event loop."""
        for worker in self.workers.values():
            worker.stop(grace_s)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Claim nothing more, give the requests in flight ``grace_s`` to finish (those still
        unanswered then are cut short, their events due again), settle them, give back the
        leases left (a batch claimed ahead, or being split), then return."""
        self.stopping(grace_s)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        if self.workers:
            try:
                released = await self.store.release(owner=self.owner)
            except StoreError as exc:
                log.warning("relay %s: leases not released (they will expire): %s", self.owner, exc)
            else:
                if released:
                    log.info("relay %s: %d lease(s) given back", self.owner, released)

    async def __aenter__(self) -> RelayRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _exited(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped on an error", task.get_name(), exc_info=task.exception())
