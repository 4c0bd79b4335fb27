"""Logging set-up: one line per request, plain or JSON, never carrying PII.

Request lines are built from the journal record, which holds hashed payload facts only
(paths, codes and counts; problems never echo values).

A logged field may come from a client (a pixel id, a path, a test tag): in the plain format
its control characters are escaped (``\\n``, ``\\x1b``), so that no value can end a line and
forge the next one. In the JSON format every line is one JSON object, the server's (granian)
and the libraries' (psycopg) included: ``configure_logging`` takes the root logger, and
``granian_log_config`` gives granian the same handler for its own process.

A request line is written on every request, so its cost counts: timestamps are formatted
once per second, and lines are written to stderr in batches (at most ``FLUSH_INTERVAL_S``
late, at once for warnings and errors) instead of one write call each. ``log_request``
writes the line straight into capigate's handler when ``configure_logging`` set it up and
nothing changed since (no filter, no other handler): the same line as a ``logging`` record
would give, without the record (a third of a one-event request's logging cost was making it).
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Literal, TextIO

import msgspec

from capigate.responses import RequestRecord

__all__ = [
    "announce",
    "announce_stream",
    "configure_logging",
    "control_characters",
    "escape_control",
    "granian_log_config",
    "log_request",
    "on_a_terminal",
]

FLUSH_INTERVAL_S: Final = 0.1
_MAX_PENDING: Final = 256

_encode = msgspec.json.Encoder().encode


# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the format characters
# (category Cf): the bidirectional controls (U+202E reversed the rest of a logged line, a trial)
# and the invisible ones, the zero-width space and joiners, the BOM, the word joiner, the soft
# hyphen, the tags (an eventName "af_purchase" + U+200B was stored and shown exactly as the real
# name, a re-trial): what can end or rewrite a line on a terminal or in a log collector, or make
# one value read as another. Cf as of Unicode 15.1, written out: reading unicodedata's 1.1
# million code points took tens of milliseconds of every import (tests/ops/test_logs.py checks
# the list against the running Python's unicodedata). But the zero-width non-joiner and joiner
# (U+200C, U+200D): words of Persian and Indian scripts and emoji sequences (a family, a flag)
# are written with them, and they rewrite nothing.
_FORMAT: Final = [
    0x00AD, *range(0x0600, 0x0606), 0x061C, 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x180E,
    0x200B, *range(0x200E, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065), *range(0x2066, 0x2070),
    0xFEFF, *range(0xFFF9, 0xFFFC), 0x110BD, 0x110CD, *range(0x13430, 0x13440), *range(0x1BCA0, 0x1BCA4),
    *range(0x1D173, 0x1D17B), 0xE0001, *range(0xE0020, 0xE0080),
]  # fmt: skip
_CONTROLS: Final = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *_FORMAT]
# \x, \u or \U by the code point's size, as Python writes them: "\u110bd" read as U+110B and a "d".
_ESCAPES: Final = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}" for c in _CONTROLS
} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
}


def escape_control(text: str) -> str:
    """``text`` with its control characters written as escapes (a backslash stays as it is)."""
    return text if text.isprintable() else text.translate(_ESCAPES)


def control_characters(text: str) -> list[str]:
    """The control characters of ``text`` (those ``escape_control`` escapes), each once, in
    order, written as escapes; none for the usual text."""
    if text.isprintable():
        return []
    return list(dict.fromkeys(_ESCAPES[ord(c)] for c in text if ord(c) in _ESCAPES))


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


def _utc_offset(created: float) -> str:
    offset = time.localtime(created).tm_gmtoff
    sign, offset = ("-", -offset) if offset < 0 else ("+", offset)
    return f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"


class JSONFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock("%Y-%m-%dT%H:%M:%S")
        self._offset: tuple[int, str] = (-1, "")  # (hour, offset): offsets change on the hour at most

    def _time(self, created: float) -> str:
        hour = int(created) // 3600
        if hour != self._offset[0]:
            self._offset = (hour, _utc_offset(created))
        return f"{self._clock.text(created)}.{int(created * 1000) % 1000:03d}{self._offset[1]}"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
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

    def request_line(self, created: float, request: RequestRecord) -> str:
        """What ``format`` gives for the record ``log_request`` would log at ``created``."""
        line = {
            "time": self._time(created),
            "level": "info",
            "logger": REQUEST_LOGGER,
            "message": _request_message(request),
            "request": _shown(request),
        }
        return _encode(line).decode()


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._clock = _SecondClock("%Y-%m-%d %H:%M:%S")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._clock.text(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = f"{self.formatTime(record)} {record.levelname} {record.name} {escape_control(record.getMessage())}"
        request = getattr(record, "capigate", None)
        if request is not None:
            text = self._request_fields(text, request)
        if record.exc_info:
            # A traceback spans lines: each is indented, so none can pass for a log line.
            text += "\n" + self.formatException(record.exc_info).replace("\n", "\n    ")
        return text

    def request_line(self, created: float, request: RequestRecord) -> str:
        """What ``format`` gives for the record ``log_request`` would log at ``created``."""
        msecs = int((created - int(created)) * 1000)  # as a LogRecord's msecs
        message = escape_control(_request_message(request))
        return self._request_fields(f"{self._clock.text(created)},{msecs:03d} INFO {REQUEST_LOGGER} {message}", request)

    @staticmethod
    def _request_fields(text: str, request: Any) -> str:
        source = "-" if request.source is None else escape_control(request.source)  # not Python's "None"
        text = f"{text} source={source} events={request.events_received}"
        if request.events_stored or request.events_duplicate:
            text += f" stored={request.events_stored} dup={request.events_duplicate}"
        if request.problems:
            first = request.problems[0]
            text += f" problems={len(request.problems)} first={escape_control(first.path)}:{first.code}"
        if request.warnings:
            text += f" warnings={len(request.warnings)}"
        if request.test_tag:
            tag = escape_control(request.test_tag)  # quoted with a space in it: "x stored=9" read as a field
            if " " in tag or '"' in tag:
                tag = '"' + tag.replace('"', '\\"') + '"'
            text += f" test={tag}"
        return text


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
        _HANDLERS.add(self)

    def _forked(self) -> None:
        # A worker process forked from the server's: its lines are the parent's to write.
        self._pending = []
        self._flusher = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._queue(line, record.levelno)

    def emit_request(self, created: float, request: RequestRecord) -> None:
        """``emit`` of the record ``log_request`` would log, without making it (its formatter
        is a capigate one: ``log_request`` checked)."""
        formatter: PlainFormatter | JSONFormatter = self.formatter  # type: ignore[assignment]
        with self.lock or _NO_LOCK:  # as Handler.handle around emit: the formatter's clock is shared
            self._queue(formatter.request_line(created, request), logging.INFO)

    def _queue(self, line: str, level: int) -> None:
        self._pending.append(line)
        if level >= logging.WARNING or len(self._pending) >= _MAX_PENDING:
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


_NO_LOCK: Final = threading.RLock()  # flush takes it inside emit_request's
_HANDLERS: Final[weakref.WeakSet[BatchingStreamHandler]] = weakref.WeakSet()

REQUEST_LOGGER: Final = "capigate.requests"
_request_log: Final = logging.getLogger(REQUEST_LOGGER)
_FORMATTERS: Final = (PlainFormatter, JSONFormatter)


def _request_message(request: RequestRecord) -> str:
    return "%s %s %d %.2fms" % (request.method, request.path, request.status, request.latency_ms)  # noqa: UP031


def _shown(request: RequestRecord) -> RequestRecord:
    """What a log line shows of a journal entry: its RequestRecord fields, never the body or
    the keys a JournalRecord keeps beside them."""
    if type(request) is RequestRecord:
        return request
    return RequestRecord(**{name: getattr(request, name) for name in RequestRecord.__struct_fields__})


def log_request(request: RequestRecord) -> None:
    """The request's line, at INFO on logger ``capigate.requests`` with the record as
    ``extra={"capigate": request}`` (what the formatters show of a request)."""
    handler = _only_handler(_request_log)
    if handler is None:
        _request_log.info(
            "%s %s %d %.2fms", request.method, request.path, request.status, request.latency_ms,
            extra={"capigate": _shown(request)},
        )  # fmt: skip
    elif _request_log.isEnabledFor(logging.INFO):
        handler.emit_request(time.time(), request)


def _only_handler(logger: logging.Logger) -> BatchingStreamHandler | None:
    """The one handler that ``logger``'s records reach, if it is capigate's own with a capigate
    formatter and no filter is on the way (``configure_logging``'s set-up): then a record would
    only be formatted and queued there. None otherwise: ``logging`` decides."""
    parent = logger.parent
    if logger.handlers or logger.filters or not logger.propagate or parent is None:
        return None
    if parent.filters or parent.propagate or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    if (
        type(handler) is not BatchingStreamHandler
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) not in _FORMATTERS
    ):
        return None
    return handler


def _flush_all() -> None:
    for handler in list(_HANDLERS):
        handler.flush()


def _forget_all() -> None:
    for handler in list(_HANDLERS):
        handler._forked()


os.register_at_fork(before=_flush_all, after_in_child=_forget_all)


def _flush_at_child_exit(flush: Callable[[], None]) -> None:
    """A multiprocessing child (a granian worker) ends with ``os._exit``, which skips atexit and
    so ``logging.shutdown``: the lines of its last tenth of a second (the requests it drained
    as it stopped, granian's "Stopping worker") were lost. multiprocessing runs its own
    finalizers first, and clears them as a child starts: each child registers ``flush`` then."""
    multiprocessing.util.Finalize(None, flush, exitpriority=0)


multiprocessing.util.register_after_fork(_flush_all, _flush_at_child_exit)  # _flush_all: held weakly, a module's


def announce_stream(fmt: Literal["plain", "json"]) -> TextIO:
    """Where ``announce`` writes: stdout in the plain format, stderr in the JSON one."""
    return sys.stdout if fmt == "plain" else sys.stderr


def on_a_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal, where nothing keeps what is written
    (not a file, a pipe, a journal or a log collector)."""
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed, or no file behind it
        return False


def announce(lines: list[str], fmt: Literal["plain", "json"]) -> None:
    """Lines for the operator at start-up (``capigate serve``'s banner): as they are on stdout
    in the plain format, as JSON log lines (logger ``capigate.serve``) on stderr in the JSON one."""
    if fmt == "plain":
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
        return
    formatter = JSONFormatter()
    for line in lines:
        record = logging.LogRecord("capigate.serve", logging.INFO, "", 0, line, None, None)
        sys.stderr.write(formatter.format(record) + "\n")
    sys.stderr.flush()


_SERVER_LOGGERS: Final = ("_granian", "granian.access")  # granian's Python and Rust sides


def configure_logging(fmt: Literal["plain", "json"], level: int = logging.INFO) -> None:
    """Log to stderr for a gateway process: capigate's records, granian's and, from warning
    up, every library's (psycopg's, Python's warnings) in the same format. Also turns off what
    our formats never show and every record would otherwise compute (the logging HOWTO's
    "Optimization" switches)."""
    logging._srcfile = None  # no caller lookup per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(_formatter(fmt))
    for name in ("capigate", *_SERVER_LOGGERS):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.getLogger("capigate").setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def _formatter(fmt: Literal["plain", "json"]) -> logging.Formatter:
    return JSONFormatter() if fmt == "json" else PlainFormatter()


def granian_log_config(fmt: Literal["plain", "json"]) -> dict[str, Any]:
    """granian's ``log_dictconfig``: its own lines (start, workers, shutdown), in its main
    process and its workers, written by capigate's handler in capigate's format."""
    formatter = "capigate.logs.JSONFormatter" if fmt == "json" else "capigate.logs.PlainFormatter"
    handler = {"class": "capigate.logs.BatchingStreamHandler", "formatter": "capigate", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"capigate": {"()": formatter}},
        "handlers": {"capigate": handler},
        "loggers": {name: {"handlers": ["capigate"], "level": "INFO", "propagate": False} for name in _SERVER_LOGGERS},
        "root": {"handlers": ["capigate"], "level": "WARNING"},
    }
