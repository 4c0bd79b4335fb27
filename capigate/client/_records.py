"""Files of events for the CLI: JSON or JSON Lines, Axon batches or events, AppsFlyer events.

Each record knows its file line and its JSON path in the file, so that a problem found at
``events[2].user_data.email`` inside it is printed as ``file.json:14: [0].events[2]...``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from capigate.errors import Problem
from capigate.unreadable import unreadable

__all__ = ["Api", "Record", "Source", "classify", "locate", "read_source"]

Api = Literal["axon", "appsflyer"]
Kind = Literal["batch", "event"]
_decode = msgspec.json.Decoder().decode
_LINES_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".jsonlines"})
_BYTE: Final = re.compile(r"byte (\d+)")


@dataclass(slots=True)
class Record:
    line: int
    root: str  # JSON path of the record in its file: "" or "[3]"
    value: Any = None
    api: Api | None = None
    kind: Kind = "event"
    problem: Problem | None = None  # the record cannot be read or classified


@dataclass(slots=True)
class Source:
    name: str
    document: str | None  # the text of a JSON document (to find lines); None for JSON Lines
    records: list[Record] = field(default_factory=list)
    unconfirmed: int = 0  # events under send's "# not confirmed" lines: they may be stored already

    def line_of(self, record: Record, path: str) -> int:
        if self.document is None:
            return record.line
        return locate(self.document, path)


def classify(value: Any, api: Api | None) -> tuple[Api, Kind] | Problem:
    """What a record is: ``events`` -> an Axon batch; ``appsflyer_id``/``eventName`` -> an
    AppsFlyer event; ``name`` with ``user_data`` or ``event_time`` -> an Axon event."""
    if not isinstance(value, dict):
        return Problem("", "not_an_object", "each record must be a JSON object (an event, or an Axon batch)")
    if api == "appsflyer":
        return "appsflyer", "event"
    if "events" in value:
        return "axon", "batch"
    if api == "axon":
        return "axon", "event"
    if "appsflyer_id" in value or "eventName" in value:
        return "appsflyer", "event"
    if "name" in value and ("user_data" in value or "event_time" in value):
        return "axon", "event"
    return Problem(
        "", "unknown_record", "neither an Axon batch nor an Axon event nor an AppsFlyer event; say which with --api"
    )


def _record(line: int, root: str, value: Any, api: Api | None) -> Record:
    kind = classify(value, api)
    if isinstance(kind, Problem):
        return Record(line, root, value, problem=kind)
    return Record(line, root, value, api=kind[0], kind=kind[1])


def read_source(path: str, api: Api | None) -> Source:
    """The records of a file ('-' for standard input): JSON Lines if the name ends in .jsonl
    or .ndjson, else a JSON document if the text is one, else JSON Lines."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    # A byte order mark, as Windows editors begin a file with: no part of its JSON, and send
    # encodes the events again (the gateway refuses a body that begins with one).
    text = text.removeprefix("\ufeff")
    name = "<stdin>" if path == "-" else path
    if Path(path).suffix.lower() not in _LINES_SUFFIXES:
        try:
            document = _decode(text)
        except msgspec.DecodeError as exc:
            if Path(path).suffix.lower() == ".json":
                match = _BYTE.search(str(exc))
                line = text.count("\n", 0, int(match.group(1))) + 1 if match else 1
                return Source(name, None, [Record(line, "", problem=_unreadable(text, exc))])
        else:
            source = Source(name, text)
            if isinstance(document, list):
                source.records = [_record(locate(text, f"[{i}]"), f"[{i}]", v, api) for i, v in enumerate(document)]
            else:
                source.records = [_record(1, "", document, api)]
            return source
    source = Source(name, None)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):  # a note, as send writes in its failed file
            if (marked := _UNCONFIRMED.match(line)) is not None:
                source.unconfirmed += int(marked.group(1))
            continue
        try:
            value = _decode(line)
        except msgspec.DecodeError as exc:
            source.records.append(Record(number, "", problem=_unreadable(line, exc)))
            continue
        source.records.append(_record(number, "", value, api))
    return source


_UNCONFIRMED: Final = re.compile(r"# not confirmed, may be stored .*: the next (\d+) event")

# --- finding the line of a JSON path in a document ------------------------------------

_TOKEN: Final = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")
_SPACE: Final = " \t\r\n"


def _tokens(path: str) -> list[str | int]:
    return [int(m.group(1)) if m.group(1) is not None else m.group(2) for m in _TOKEN.finditer(path)]


def _space(s: str, i: int) -> int:
    while i < len(s) and s[i] in _SPACE:
        i += 1
    return i


def _string_end(s: str, i: int) -> int:
    i += 1
    while s[i] != '"':
        i += 2 if s[i] == "\\" else 1
    return i + 1


def _value_end(s: str, i: int) -> int:
    if s[i] == '"':
        return _string_end(s, i)
    if s[i] not in "[{":
        while i < len(s) and s[i] not in ",]}" + _SPACE:
            i += 1
        return i
    depth = 0
    while True:
        c = s[i]
        if c == '"':
            i = _string_end(s, i)
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def _member(s: str, i: int, token: str | int) -> int | None:
    """The offset of member ``token`` of the container at ``i`` (key start or element start)."""
    opening = "[" if isinstance(token, int) else "{"
    if s[i] != opening:
        return None
    i, index = _space(s, i + 1), 0
    while i < len(s) and s[i] not in "]}":
        start = i
        if isinstance(token, int):
            if index == token:
                return start
        else:
            end = _string_end(s, i)
            key = _decode(s[i:end])
            i = _space(s, end) + 1  # past ':'
            if key == token:
                return start
            i = _space(s, i)
        i = _space(s, _value_end(s, i))
        if i < len(s) and s[i] == ",":
            i = _space(s, i + 1)
        index += 1
    return None


def locate(document: str, path: str) -> int:
    """The 1-based line of ``path`` (``[0].events[2].user_data.email``) in a JSON document,
    or of its deepest ancestor present (a missing field points at its object)."""
    best = _space(document, 0)
    i = best
    try:
        for token in _tokens(path):
            found = _member(document, i, token)
            if found is None:
                break
            best = found
            if isinstance(token, str):  # from the key to its value
                i = _space(document, _string_end(document, found))
                i = _space(document, i + 1)
            else:
                i = found
    except (IndexError, msgspec.DecodeError):
        pass
    return document.count("\n", 0, best) + 1


def _unreadable(text: str, error: msgspec.DecodeError) -> Problem:
    """As the gateway says it (capigate.unreadable): a number past ±1.8e308 is out_of_range at
    its path, where it was "not valid JSON: Number out of range" with no path (a trial)."""
    problem = unreadable(text.encode(), error)
    if problem.code == "out_of_range":
        return problem
    return Problem("", "malformed_json", f"not valid JSON: {error}")
