"""What every handler can reach: the configuration and the store of this gateway node."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from capigate.config import Config
from capigate.errors import StoreError
from capigate.health import StoreHealth
from capigate.http.asgi import Receive, Scope, Send
from capigate.http.journal import JournalBuffer
from capigate.http.session import LoginThrottle
from capigate.metrics import Metrics
from capigate.store.base import OutboxDepth, Retention, Store

if TYPE_CHECKING:
    from capigate.http.routing import Route

__all__ = ["Gateway"]

log = logging.getLogger("capigate")


@dataclass(slots=True)
class Gateway:
    config: Config
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    # The gateway's own ASGI app, for the requests it sends itself (the inspector's test events).
    loopback: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
    # Called with a destination once events queued for it are committed: wakes this
    # process's relay worker (capigate/relay/runner.py) without waiting for its next poll.
    relay_wake: Callable[[str], None] | None = None
    # Whether each relay worker of this process is running, by destination (for /readyz).
    relay_running: Callable[[], dict[str, bool]] | None = None
    # Failed inspector logins per client, for this process (capigate/http/session.py).
    logins: LoginThrottle = field(default_factory=LoginThrottle)
    # The store's health as this process last saw it (capigate/health.py).
    health: StoreHealth = field(init=False)
    # This process's journal entries on their way to the store.
    journal: JournalBuffer | None = None
    # The routes this node serves (for /openapi.json).
    routes: tuple[Route, ...] = ()
    # Whether a journal entry leaves the dedupe ids of the events it stored to the store
    # (kept.dedupe_ids_not_stored): decided once, it is asked on every ingest.
    stored_ids_left_to_store: bool = field(init=False)

    def __post_init__(self) -> None:
        self.health = StoreHealth(self.store)
        self.stored_ids_left_to_store = (
            self.store.finds_stored_dedupe_ids and self.config.store.dedupe_keys_outlive_journal
        )

    @property
    def retention(self) -> Retention:
        s = self.config.store
        return Retention(
            dedupe_days=s.dedupe_retention_days,
            journal_days=s.journal_retention_days,
            journal_max_rows=s.journal_max_rows,
            event_days=s.event_retention_days,
        )

    async def outbox_depths(self) -> list[OutboxDepth] | None:
        """The store's outbox depths, or None when it cannot say now (for /metrics and the inspector)."""
        try:
            return await self.store.outbox_depths()
        except StoreError:
            log.warning("outbox depths could not be read")
            return None
