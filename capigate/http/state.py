"""What every handler can reach: the configuration and the store of this gateway node."""

from __future__ import annotations

from dataclasses import dataclass

from capigate.config import Config
from capigate.store.base import Retention, Store

__all__ = ["Gateway"]


@dataclass(slots=True)
class Gateway:
    config: Config
    store: Store

    @property
    def retention(self) -> Retention:
        s = self.config.store
        return Retention(
            dedupe_days=s.dedupe_retention_days,
            journal_days=s.journal_retention_days,
            journal_max_rows=s.journal_max_rows,
        )
