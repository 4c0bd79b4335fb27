"""A key given twice in one JSON object: the last value is kept, and said (``duplicate_key``).

AppLovin's and AppsFlyer's JSON parsers most likely keep the last value of a repeated key, as
msgspec does, so a client that repeats one must not start getting 400s here: the value kept
is the one msgspec decoded, and a warning at the key's path says the earlier ones were
ignored (a new user's trial stored ``event_time`` 5 from a body that gave it twice, silently).

msgspec cannot tell a repeated key, so the exact check here reads the text again with
``json.loads``, recording each object's keys (``repeated_keys``). That costs as much as the
decode and more: the callers run it only when a count of colons says a key may repeat
(``may_repeat``; the typed Axon path first compares the body's length with its events'
payloads, encoded already, since a count of colons over every byte cost the rules 12 % of a
purchase event's instructions, where the lengths cost 5 %: ``axon/typed.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Final

from capigate.checking import Report, join
from capigate.personal import shown_key

__all__ = ["CODE", "colons_differ", "may_repeat", "repeated_keys"]

CODE: Final = "duplicate_key"
# The escapes of ":" (\u003a, \u003A) and of the other characters \u0030-\u003f: a colon so
# written is one byte in what msgspec encodes again and none in the text, and could hide a
# repeated key from a count of colons (``may_repeat``). Rare: such a text is read exactly.
ESCAPED_COLON: Final = b"\\u003"
_COLON: Final = 58  # ord(":"): counted as an int, not a bytes needle


def may_repeat(text: bytes, encoded: bytes) -> bool:
    """Whether a key may repeat in the JSON ``text``, whose decoded value msgspec encoded as
    ``encoded``: each key of an object is followed by a colon, and a repeated key's earlier
    pair is in ``text`` and not in ``encoded`` (which has every other colon of ``text``, those
    inside strings included: whitespace, escapes and number forms add or drop none, but an
    escaped colon, ESCAPED_COLON). False is sure; True only asks ``repeated_keys``."""
    return colons_differ(text, encoded.count(_COLON))


def colons_differ(text: bytes, colons: int) -> bool:
    """``may_repeat`` given the colons of what was encoded again (the typed Axon path sums
    its events' payloads')."""
    return text.count(_COLON) != colons or text.find(ESCAPED_COLON) != -1


class _Repeated(dict[str, Any]):
    """An object that gave some key more than once: its keys so given, with how many times."""

    __slots__ = ("repeated",)
    repeated: dict[str, int]


def repeated_keys(text: bytes | str, path: str, report: Report, *, top: str = "") -> None:
    """Warns at each key that ``text`` (JSON msgspec decoded) gives more than once in one
    object, at its path below ``path``, in the order of the text; ``top`` names an array at
    the top (Axon's bare array of events is read as ``events``). Linear in the text: a key
    given 20,000 times is counted once, said once."""
    found: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        found.append(True)
        repeated = _Repeated(obj)
        repeated.repeated = {k: n for k, n in Counter(k for k, _ in items).items() if n > 1}
        return repeated

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # msgspec read it: only past json's limits (digits, depth)
        return
    if not found:
        return
    start = top if isinstance(value, list) and top else path
    stack: list[tuple[str, Any]] = [(start, value)]
    while stack:  # depth first, in the order of the text, without recursion
        here, value = stack.pop()
        if isinstance(value, dict):
            if type(value) is _Repeated:
                for key, times in value.repeated.items():
                    shown = shown_key(key)
                    report.warn(
                        join(here, shown),
                        CODE,
                        f"`{shown}` is given {times} times in this object: the last value is the one read, as "
                        f"the API reads it, and the {times - 1} before it are ignored; send each key once",
                    )
            stack.extend(
                (join(here, shown_key(k)), v) for k, v in reversed(value.items()) if isinstance(v, (dict, list))
            )
        else:
            stack.extend((join(here, i), v) for i, v in reversed(list(enumerate(value))) if isinstance(v, (dict, list)))
