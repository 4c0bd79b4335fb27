"""The one exception tree of capigate.

CapigateError
├── BatcherFull          a batcher's bounded queue stayed full as long as add() could wait
├── ConfigError          a configuration file or option is wrong (names file, key and fix)
├── InvalidEvents        events failed validation; carries every Problem with its path
├── StoreError           the store refused or could not complete an operation
└── TransportError       a request to a gateway or upstream API did not complete
    └── HTTPStatusError  it completed with a status that is not success
"""

from __future__ import annotations

import msgspec

__all__ = [
    "BatcherFull",
    "CapigateError",
    "ConfigError",
    "HTTPStatusError",
    "InvalidEvents",
    "Problem",
    "StoreError",
    "TransportError",
]


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong (or worth a warning) in a payload, located by its JSON path."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<body>'}: {self.message} [{self.code}]"


class CapigateError(Exception):
    """Root of every error capigate raises on purpose."""


class BatcherFull(CapigateError):
    """The event was not queued: the sender is behind (the endpoint is slow or failing)."""

    def __init__(self, max_queue: int, timeout_s: float | None) -> None:
        self.max_queue, self.timeout_s = max_queue, timeout_s
        super().__init__(f"the batcher holds {max_queue} events waiting to be sent; none left in {timeout_s} s")


class ConfigError(CapigateError):
    """A mistake at ``key`` of ``file``; ``key`` empty: the file as a whole (missing, unreadable)."""

    def __init__(self, file: str, key: str, fix: str) -> None:
        self.file, self.key, self.fix = file, key, fix
        super().__init__(f"{file}: {key}: {fix}" if key else f"{file}: {fix}")


class InvalidEvents(CapigateError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s):\n{lines}")


class StoreError(CapigateError):
    """The store did not do what was asked. ``maybe_stored``: the write was sent and no answer
    came back (a timeout, a lost connection, a writer that died), so it may have been committed:
    the gateway says so (503 ``store_unconfirmed``) and a client repeats it only if a repeat is
    dropped (events with a dedupe_id)."""

    def __init__(self, message: str, *, maybe_stored: bool = False) -> None:
        self.maybe_stored = maybe_stored
        super().__init__(message)


class TransportError(CapigateError):
    """No answer came back from ``url`` (refused, timed out, reset)."""

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class HTTPStatusError(TransportError):
    """``url`` answered ``status_code``: ``message`` is the server's reason (said once, in
    ``str(error)`` too), ``body`` the response body as received, ``problems`` the problems
    it listed, each with its path (capigate's JSON answers; empty for a plain-text one)."""

    def __init__(
        self, status_code: int, message: str, *, url: str = "", body: bytes = b"", problems: list[Problem] | None = None
    ) -> None:
        self.status_code, self.message, self.body, self.problems = status_code, message, body, problems or []
        lines = "".join(f"\n  {p}" for p in self.problems if p.message != message)  # said once
        where = f" from {url}" if url else ""
        super().__init__(f"HTTP {status_code}{where}: {message}{lines}", url=url)

    @property
    def status(self) -> int:
        """The same as ``status_code``."""
        return self.status_code

    @property
    def text(self) -> str:
        """The response body as text."""
        return self.body.decode("utf-8", "replace")
