"""Checking JSON objects against the wire Structs while collecting *every* problem.

msgspec stops at the first error, which is what the fast path wants: ``convert`` the whole
object once. Only when that fails does ``collect`` walk the object field by field, so a
refused payload reports all its problems, each at its JSON path.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Iterable
from typing import Any, Final, TypeVar

import msgspec

from capigate.errors import Problem

__all__ = [
    "LISTED_PER_CODE",
    "TOO_LARGE_NUMBER",
    "Report",
    "a_number",
    "check_struct",
    "converts",
    "did_you_mean",
    "has_edge_spaces",
    "is_blank_dedupe_id",
    "join",
    "listed",
    "shown_value",
    "top_key",
    "you_mean",
]

S = TypeVar("S", bound=msgspec.Struct)
# A number msgspec reads as out of range, in every place that says so: a body, a field, a file.
TOO_LARGE_NUMBER: Final = "this number is too large to read (JSON numbers go to ±1.8e308)"
# Of each code, the warnings (and the problems) of one request that its answer and its journal
# entry list: a full batch of 100 events of 10 items each, each item warned about. Past them, one
# ``not_listed`` entry says how many more there were, and under which path (``listed``): 70,000
# unknown keys of one event made an 8.2 MB answer and an 8.9 MB journal entry (a trial).
LISTED_PER_CODE: Final = 1000


class Report:
    """Problems (the payload is refused) and warnings (it is accepted) found while checking,
    and how many of each code were said through ``error`` and ``warn`` (``said``)."""

    __slots__ = ("problems", "said", "warnings")

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.said: dict[str, int] = {}

    def error(self, path: str, code: str, message: str) -> None:
        self.problems.append(Problem(path, code, message))
        said = self.said
        said[code] = said.get(code, 0) + 1

    def warn(self, path: str, code: str, message: str) -> None:
        self.warnings.append(Problem(path, code, message))
        said = self.said
        said[code] = said.get(code, 0) + 1

    def lists(self, code: str) -> bool:
        """Whether one more problem or warning of ``code`` would be listed in the answer
        (``listed``), as far as ``error`` and ``warn`` tell: a rule asks before it spends on a
        part of a message that no one would read (a "did you mean" for each of 70,000 unknown
        keys took half a second)."""
        return self.said.get(code, 0) < LISTED_PER_CODE

    @property
    def ok(self) -> bool:
        return not self.problems


def listed(said: list[Problem], noun: str = "warnings") -> list[Problem]:
    """``said``, a request's problems or warnings (``noun``), as its answer and its journal
    entry list them: the first LISTED_PER_CODE of each code, in their order, and in place of
    the next one of a code, one ``not_listed`` entry counting the rest, at the deepest path
    they all lie under. ``said`` itself when it holds no more than that (every usual answer)."""
    if len(said) <= LISTED_PER_CODE:
        return said
    out: list[Problem] = []
    counts: dict[str, int] = {}
    rest: dict[str, tuple[int, str]] = {}  # code -> (where its not_listed entry goes in out, the path)
    for problem in said:
        code = problem.code
        count = counts[code] = counts.get(code, 0) + 1
        if count <= LISTED_PER_CODE:
            out.append(problem)
        elif count == LISTED_PER_CODE + 1:
            rest[code] = (len(out), problem.path)
            out.append(problem)  # its place, taken below
        else:
            at, under = rest[code]
            if not _lies_under(problem.path, under):
                rest[code] = (at, _common_path(under, problem.path))
    for code, (at, under) in rest.items():
        out[at] = _not_listed(code, counts[code] - LISTED_PER_CODE, under, noun)
    return out


def _not_listed(code: str, more: int, path: str, noun: str) -> Problem:
    where = ("under " if more > 1 else "at ") + path if path else "in the body"
    what = f"{more:,} more {code} {noun} {where} are" if more > 1 else f"1 more {code} {noun[:-1]} {where} is"
    message = f"{what} not listed: an answer and its journal entry list the first {LISTED_PER_CODE:,} of each code"
    return Problem(path, "not_listed", message)


def _lies_under(path: str, parent: str) -> bool:
    """Whether ``path`` is ``parent`` or a path inside it (``events[0].data.k1`` of ``events[0].data``)."""
    return not parent or (path.startswith(parent) and (len(path) == len(parent) or path[len(parent)] in ".["))


def _common_path(a: str, b: str) -> str:
    """The deepest path that both ``a`` and ``b`` lie under: ``events[0].data`` of
    ``events[0].data.k1`` and ``events[0].data.k2``; ``events`` of ``events[1].x`` and
    ``events[12].x``; "" (the body) of ``events`` and ``pixel``."""
    end = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        end += 1
    while end and not (_lies_under(a, a[:end]) and _lies_under(b, a[:end])):
        end -= 1
    return a[:end]


def is_blank_dedupe_id(value: object) -> bool:
    """An empty or all-whitespace dedupe id (Axon's dedupe_id, an AppsFlyer app's dedupe_key
    parameter): a client's `order_id || ""`, not an id; both APIs warn ``blank_dedupe_id``."""
    return isinstance(value, str) and (not value or value.isspace())


def has_edge_spaces(value: object) -> bool:
    """A dedupe id with white space before or after it (``"A-1 "``, a spreadsheet's or a
    template's): kept and matched as sent, so it and ``"A-1"`` are two ids; Axon warns
    ``dedupe_id_spaces``. A blank one is ``is_blank_dedupe_id``'s."""
    return isinstance(value, str) and value != "" and (value[0].isspace() or value[-1].isspace())


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.7)
    return you_mean(close[0]) if close else ""


def you_mean(name: str) -> str:
    """The hint that ends a message: `` (did you mean 'GB'?)``."""
    return f" (did you mean {name!r}?)"


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def top_key(path: str) -> str:
    """The first key of a path: ``eventValue`` of ``eventValue.items[0].email``."""
    return path.split(".", 1)[0].split("[", 1)[0]


def check_struct(raw: Any, kind: type[S], path: str, report: Report) -> S | None:
    """Convert ``raw`` into ``kind``; on failure record every problem and return None."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError:
        _collect(raw, kind, path, report)
        return None


def _collect(raw: Any, kind: Any, path: str, report: Report) -> None:
    struct = _struct_in(kind)
    if struct is not None and isinstance(raw, dict):
        _collect_fields(raw, struct, path, report)
        return
    item = _list_item_type(kind)
    if item is not None and isinstance(raw, list) and _struct_in(item) is not None:
        try:
            msgspec.convert(raw, kind)
        except msgspec.ValidationError as exc:
            if not _only_inside_items(exc):
                _record(exc, path, report)
        for i, element in enumerate(raw):
            if not converts(element, item):
                _collect(element, item, join(path, i), report)
        return
    try:
        msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        _record(exc, path, report, kind, raw)


@functools.cache
def _fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, bool, Any], ...]:
    """(wire name, required, annotated type) of each field; computing this is slow (~1 ms)."""
    hints = typing.get_type_hints(struct, include_extras=True)
    return tuple((f.encode_name, f.required, hints[f.name]) for f in msgspec.structs.fields(struct))


def _collect_fields(raw: dict[str, Any], struct: type[msgspec.Struct], path: str, report: Report) -> None:
    for name, required, kind in _fields(struct):
        here = join(path, name)
        if name not in raw:
            if required:
                report.error(here, "missing_field", f"`{name}` is required")
            continue
        value = raw[name]
        if not converts(value, kind):
            _collect(value, kind, here, report)


def converts(value: Any, kind: Any) -> bool:
    """Whether msgspec takes ``value`` as ``kind``."""
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def _struct_in(kind: Any) -> type[msgspec.Struct] | None:
    """The Struct type in ``kind`` (or ``Struct | None``), if any."""
    kind = _strip_annotated(kind)
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return kind
    if _is_union(kind):
        for arg in typing.get_args(kind):
            found = _struct_in(arg)
            if found is not None:
                return found
    return None


def _list_item_type(kind: Any) -> Any:
    kind = _strip_annotated(kind)
    if _is_union(kind):
        for arg in typing.get_args(kind):
            found = _list_item_type(arg)
            if found is not None:
                return found
        return None
    if typing.get_origin(kind) is list:
        return typing.get_args(kind)[0]
    return None


def _strip_annotated(kind: Any) -> Any:
    while typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    return kind


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


_AT = re.compile(r" - at `\$(.*)`$")
_CODES = (
    ("Object missing required field", "missing_field"),
    ("Invalid enum value", "invalid_enum"),
    ("matching regex", "invalid_format"),
    ("of length", "invalid_length"),
    (">=", "out_of_range"),
    ("<=", "out_of_range"),
    ("` > ", "out_of_range"),
    ("` < ", "out_of_range"),
    ("Number out of range", "out_of_range"),
    ("Expected `", "wrong_type"),
)


def _record(exc: msgspec.ValidationError, path: str, report: Report, kind: Any = None, sent: Any = None) -> None:
    """``sent``: the value at ``path`` itself (the error is of it when msgspec names no path
    inside it)."""
    message = str(exc)
    match = _AT.search(message)
    if match is None and _quoted_number(message, sent, kind):
        report.error(path, "wrong_type", _readable(message) + ": send it without the quotes")
        return
    if match:
        start = match.start()  # a slice bound is a value: mypyc may evaluate it twice (native.py)
        message = message[:start]
        path = path + match.group(1) if path else match.group(1).lstrip(".")
    code = next((c for needle, c in _CODES if needle in message), "invalid")
    if message == "Number out of range":
        message = TOO_LARGE_NUMBER
    elif code == "invalid_length" and match is None:
        message = _length_message(message, path, sent) or message
    elif code == "invalid_enum":
        message = _enum_message(message, kind)
    elif code == "invalid_format":
        message = _format_message(kind)
    elif code == "out_of_range":
        message = _bound_message(message, path, kind) or message
    elif code == "wrong_type" and match is None:
        message = _number_for_string(message, path, sent) or message
    report.error(path, code, _readable(message))


def _quoted_number(message: str, sent: Any, kind: Any = None) -> bool:
    """Whether msgspec's ``message`` refused a number sent in quotes (``"value": "10"``) where a
    number is wanted: said "Expected number, got string", while a quoted event_time was told to
    drop the quotes (a trial). An integer field, only of an integer in quotes; and only of a
    number the field (``kind``) takes unquoted: ``"1e400"`` was told to drop them (a re-trial)."""
    if not _looks_quoted_number(message, sent):
        return False
    if kind is None:
        return True
    try:
        msgspec.json.decode(sent.strip().encode(), type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


def _looks_quoted_number(message: str, sent: Any) -> bool:
    if not isinstance(sent, str) or not message.endswith("got `str`"):
        return False
    found = _WANTED.match(message)
    if found is None:
        return False
    wanted = found.group(1).split(" | ")
    if "float" in wanted:
        return _JSON_NUMBER.fullmatch(sent.strip()) is not None
    return "int" in wanted and _JSON_INTEGER.fullmatch(sent.strip()) is not None


_WANTED: Final = re.compile(r"Expected `([^`]+)`")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_JSON_INTEGER: Final = re.compile(r"-?(?:0|[1-9]\d*)")


_BOUND = re.compile(r"Expected `(int|float)` (>=|<=|>|<) (\S+)$")
_FIELD_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])*$")


def _field_name(path: str) -> str:
    """The field a message names: the last key of ``path`` (``items[0].price`` → price)."""
    named = _FIELD_NAME.search(path)
    return named.group(1) if named else "the value"


def _bound_message(message: str, path: str, kind: Any) -> str | None:
    """``value must be a number of 0 or more, not a negative one`` for msgspec's ``Expected
    `float` >= 0.0``: what the field must be (both its bounds, from its type), then which it
    missed; None for any other message."""
    found = _BOUND.match(message)
    if found is None:
        return None
    (low, ge), (high, le) = _bounds(kind)
    if ge is not None and le is not None:
        allowed = f"from {ge} to {le}"
    else:
        allowed = " and ".join(text for text in (low, high) if text)
        allowed = f"of {allowed}" if allowed[:1].isdigit() else allowed
    op, bound = found.group(2), _plain(found.group(3))
    missed = _MISSED[op].format(bound) if (op, bound) != (">=", "0") else "a negative one"
    name = _field_name(path)
    return f"{name} must be {'an integer' if found.group(1) == 'int' else 'a number'} {allowed}, not {missed}"


_MISSED: Final = {">=": "below {}", ">": "{} or less", "<=": "above {}", "<": "{} or more"}
_MAX_LENGTH: Final = re.compile(r"Expected `str(?: \| null)?` of length <= ([0-9]+)$")
_MIN_LENGTH: Final = re.compile(r"Expected `str(?: \| null)?` of length >= ([0-9]+)$")


def _length_message(message: str, path: str, sent: Any) -> str | None:
    """``dedupe_id is 600 characters; at most 512`` for msgspec's ``Expected `str` of length <=
    512`` of the string ``sent``, ``client_user_agent must not be empty`` for its ``Expected
    `str` of length >= 1`` of "" (an empty user agent or eventName was told that, where the
    neighbouring fields name themselves); None for any other message."""
    if not isinstance(sent, str):
        return None
    name = _field_name(path)
    found = _MAX_LENGTH.match(message)
    if found is not None:
        return f"{name} is {len(sent):,} characters; at most {int(found.group(1)):,}"
    found = _MIN_LENGTH.match(message)
    if found is None:
        return None
    if not sent:
        return f"{name} must not be empty"
    return f"{name} is {len(sent):,} characters; at least {int(found.group(1)):,}"


def _number_for_string(message: str, path: str, sent: Any) -> str | None:
    """``dedupe_id must be a string, not a number: send it in quotes`` for msgspec's ``Expected
    `str | null`, got `int``` of a number ``sent`` where a string is wanted (a dedupe_id of 123,
    AppsFlyer's os of 14), as a number sent in quotes is told to drop them; None otherwise. The
    number is never shown: an id may be a phone number."""
    if not isinstance(sent, int | float) or isinstance(sent, bool):
        return None
    found = _WANTED.match(message)
    if found is None or "str" not in found.group(1).split(" | "):
        return None
    name = _field_name(path)
    return f'{name} must be a string, not a number: send it in quotes ("123", not 123)'


def _bounds(kind: Any) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
    """The lower and the upper bound of a number's type, each as said (``0 or more``, ``less
    than 60``, empty when none) and its number when inclusive (``0``, else None)."""
    low: tuple[str, str | None] = ("", None)
    high: tuple[str, str | None] = ("", None)
    for arg in typing.get_args(kind) if _is_union(kind) else (kind,):
        if typing.get_origin(arg) is not typing.Annotated:
            continue
        for meta in typing.get_args(arg)[1:]:
            if not isinstance(meta, msgspec.Meta):
                continue
            if meta.ge is not None:
                low = (f"{_plain(meta.ge)} or more", _plain(meta.ge))
            elif meta.gt is not None:
                low = (f"more than {_plain(meta.gt)}", None)
            if meta.le is not None:
                high = (f"{_plain(meta.le)} or less", _plain(meta.le))
            elif meta.lt is not None:
                high = (f"less than {_plain(meta.lt)}", None)
    return low, high


def _plain(number: object) -> str:
    """``0`` of 0.0, ``1.5`` of 1.5: a bound as a person writes it."""
    text = str(number)
    return text[:-2] if text.endswith(".0") else text


_ENUM_VALUE = re.compile(r"Invalid enum value (.*)$")


def _enum_message(message: str, kind: Any) -> str:
    """``Invalid enum value 'tv'; use one of web, app``, the value shown only when it cannot be
    personal data."""
    match = _ENUM_VALUE.match(message)
    given = match.group(1) if match else ""
    if given.startswith("'") and given.endswith("'"):
        given = shown_value(given[1:-1])
    allowed = _literal_values(kind)
    shown = ", ".join('""' if value == "" else str(value) for value in allowed)
    return f"Invalid enum value {given}" + (f"; use one of {shown}" if allowed else "")


def _format_message(kind: Any) -> str:
    """Never the raw regex: the format as the type's description says it."""
    meta = _meta_description(kind)
    return f"Expected a string in the form: {meta}" if meta else "Expected a string in another format"


def shown_value(value: str) -> str:
    """``value`` quoted when it cannot be personal data (short, printable, no "@", few
    digits); else only described, so that no message repeats an email or a phone number."""
    if len(value) <= 32 and "@" not in value and sum(c.isdigit() for c in value) < 5 and value.isprintable():
        return repr(value)
    return f"({a_number(len(value))}-character value, not shown: it may be personal data)"


def a_number(number: int) -> str:
    """``number`` after the article its English reading takes: "an 18", "an 800", "a 17".
    The reading starts with a vowel when its first group of three digits (18 of 18,500: "eighteen
    thousand") starts with eight, or is eleven or eighteen."""
    digits = str(abs(number))
    lead = digits[: len(digits) % 3 or 3]
    return f"{'an' if lead[0] == '8' or lead in ('11', '18') else 'a'} {number}"


def _literal_values(kind: Any) -> tuple[Any, ...]:
    kind = _strip_annotated(kind)
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)
    if _is_union(kind) or typing.get_origin(kind) is list:
        for arg in typing.get_args(kind):
            found = _literal_values(arg)
            if found:
                return found
    return ()


def _meta_description(kind: Any) -> str | None:
    while typing.get_origin(kind) is typing.Annotated or _is_union(kind):
        if typing.get_origin(kind) is typing.Annotated:
            for meta in typing.get_args(kind)[1:]:
                if isinstance(meta, msgspec.Meta) and meta.description:
                    return meta.description
            kind = typing.get_args(kind)[0]
        else:
            found = [d for d in map(_meta_description, typing.get_args(kind)) if d]
            return found[0] if found else None
    return None


def _only_inside_items(exc: msgspec.ValidationError) -> bool:
    match = _AT.search(str(exc))
    return bool(match and match.group(1).startswith("["))


_TYPE_NAMES: Final = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_KIND = r"(?:str|int|float|bool|object|array|null)"
_MSGSPEC_TYPE = re.compile(rf"`({_KIND}(?: \| {_KIND})*)`")  # only types: a backticked field name stays


def _readable(message: str) -> str:
    """msgspec's ``Expected `float | null`, got `bool``` as ``Expected number or null, got boolean``."""
    return _MSGSPEC_TYPE.sub(
        lambda found: " or ".join(_TYPE_NAMES.get(name, name) for name in found.group(1).split(" | ")), message
    )
