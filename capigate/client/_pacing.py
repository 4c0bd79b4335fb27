"""How a client paces and retries its requests: ``RetryPolicy`` (the timing of
``capigate/retry.py``, which the relay uses too) and ``Pacer`` (a rate limit in events/s)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from capigate.retry import backoff_s, retry_delay_s

__all__ = ["Pacer", "RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    The n-th retry waits a random time between 0 and ``min(backoff_max_s, backoff_base_s *
    2**(n-1))`` (full jitter), and never less than the server's ``Retry-After`` asks, up to
    ``max_retry_after_s`` (a longer ask waits that long, then tries again): the timing of
    ``capigate/retry.py``, which the relay uses too.

    Retried: the statuses in ``retry_statuses``, and transport errors raised before the
    request was sent (connection refused, connect or pool timeout). A transport error after
    the request was sent (read timeout, connection reset) may mean the server stored it; such
    a request is retried only when the server drops the repeat: an Axon batch whose every
    event has a ``dedupe_id``. AppsFlyer does not deduplicate, so its clients do not repeat it.

    The budget: ``max_attempts`` tries in all, and no retry that would start later than
    ``max_elapsed_s`` after the first try (None: no such limit). With the defaults, a request
    to a dead server (connection refused) is tried 5 times with at most ``max_backoff_total_s``
    = 7.5 s of waits in between (3.75 s on average); to an unreachable one, add each try's
    connect timeout (at most 5 s). ``RetryPolicy(max_attempts=1)`` never retries.
    """

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_elapsed_s: float | None = None
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.max_elapsed_s is not None and self.max_elapsed_s < 0:
            raise ValueError("RetryPolicy.max_elapsed_s must be positive or None")

    @property
    def max_backoff_total_s(self) -> float:
        """The longest a request can spend waiting between its tries, Retry-After aside."""
        return sum(min(self.backoff_max_s, self.backoff_base_s * 2.0**n) for n in range(self.max_attempts - 1))

    def backoff_s(self, attempt: int) -> float:
        """The jittered wait after failed attempt number ``attempt`` (1-based)."""
        return backoff_s(attempt - 1, base_s=self.backoff_base_s, max_s=self.backoff_max_s, rng=self.rng)

    def delay_s(self, attempt: int, retry_after: str | None) -> float:
        """The wait after failed attempt number ``attempt``, given the answer's ``Retry-After``."""
        backoff = self.backoff_s(attempt)
        return retry_delay_s(backoff, retry_after, now_s=time.time(), max_retry_after_s=self.max_retry_after_s)


class Pacer:
    """Spaces requests so that on average at most ``rate_eps`` events leave per second.

    Thread-safe, and usable from async code (the lock is never held across a wait)."""

    def __init__(self, rate_eps: float) -> None:
        if rate_eps <= 0:
            raise ValueError("rate_limit_eps must be positive")
        self.rate_eps = rate_eps
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self, events: int) -> float:
        """Book ``events`` events; returns how long to wait before sending them."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + events / self.rate_eps
            return start - now
