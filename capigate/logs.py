"""Logging set-up: one line per request, plain or JSON, never carrying PII.

Request lines are built from the journal record, which holds hashed payload facts only
(paths, codes and counts; problems never echo values).

A request line is written on every request, so its cost counts: timestamps are formatted
once per second, and lines are written to stderr in batches (at most ``FLUSH_INTERVAL_S``
late, at once for warnings and errors) instead of one write call each.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Final, Literal, TextIO

import msgspec

__all__ = ["configure_logging"]

FLUSH_INTERVAL_S: Final = 0.1
_MAX_PENDING: Final = 256

_encode = msgspec.json.Encoder().encode


class _SecondClock:
    """``time.strftime`` of the current second, computed once per second."""

    __slots__ = ("_fmt", "_second", "_text")

    def __init__(self, fmt: str) -> None:
        self._fmt, self._second, self._text = fmt, -1, ""

    def text(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime(self._fmt, time.localtime(second))
        return self._text


class JSONFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock("%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._clock.text(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "capigate", None)
        if request is not None:
            line["request"] = request  # a msgspec Struct: encoded as it is
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line).decode()


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._clock = _SecondClock("%Y-%m-%d %H:%M:%S")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._clock.text(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request = getattr(record, "capigate", None)
        if request is None:
            return text
        parts = [text, f"source={request.source}", f"events={request.events_received}"]
        if request.events_stored or request.events_duplicate:
            parts.append(f"stored={request.events_stored} dup={request.events_duplicate}")
        if request.problems:
            parts.append(
                f"problems={len(request.problems)} first={request.problems[0].path}:{request.problems[0].code}"
            )
        if request.warnings:
            parts.append(f"warnings={len(request.warnings)}")
        if request.test_tag:
            parts.append(f"test={request.test_tag}")
        return " ".join(parts)


class BatchingStreamHandler(logging.Handler):
    """Writes lines to a stream in batches: one write call per batch, not per line.

    A warning or worse is written at once with what waits before it; other lines wait at most
    ``interval_s`` for a daemon thread, and ``logging.shutdown`` (at exit) writes the rest.
    """

    def __init__(self, stream: TextIO, interval_s: float = FLUSH_INTERVAL_S) -> None:
        super().__init__()
        self.stream = stream
        self._pending: list[str] = []
        self._interval_s = interval_s
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        if record.levelno >= logging.WARNING or len(self._pending) >= _MAX_PENDING:
            self.flush()
        elif self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_forever, name="capigate-log-flush", daemon=True)
            self._flusher.start()

    def flush(self) -> None:
        with self.lock or _NO_LOCK:
            lines, self._pending = self._pending, []
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # stderr closed or gone: nothing useful to do
                    pass

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._interval_s)
            self.flush()


_NO_LOCK: Final = threading.Lock()


def configure_logging(fmt: Literal["plain", "json"], level: int = logging.INFO) -> None:
    """Log to stderr for a gateway process. Also turns off what our formats never show and
    every record would otherwise compute (the logging HOWTO's "Optimization" switches)."""
    logging._srcfile = None  # no caller lookup per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger("capigate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
