"""Logging set-up: one line per request, plain or JSON, never carrying PII.

Request lines are built from the journal record, which holds hashed payload facts only
(paths, codes and counts; problems never echo values).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import msgspec

__all__ = ["configure_logging"]

_encode = msgspec.json.Encoder().encode


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "capigate", None)
        if request is not None:
            line["request"] = msgspec.to_builtins(request)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line).decode()


class PlainFormatter(logging.Formatter):
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


def configure_logging(fmt: Literal["plain", "json"], level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("capigate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
