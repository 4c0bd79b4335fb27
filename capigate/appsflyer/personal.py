"""Personal data where the AppsFlyer schema cannot see it: unknown top-level keys, and
anything inside ``eventValue`` and ``custom_data``.

A key named like personal data, a string holding an email address, or a key that is itself
one, is dropped with ``plain_pii_dropped`` at its path. A SHA-256 hex value is never taken
for personal data. Phone numbers are only recognised by their key (``phone``): under a
harmless key, a string of digits is far more often an order or content id, and dropping
those would lose real data.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Any, Final

from capigate.checking import Report, join, top_key
from capigate.identity import contains_email, is_sha256_hex

__all__ = ["looks_personal", "shown_key", "without_personal"]

_PII_KEY = re.compile(r"e-?mail|phone|first_?name|last_?name|surname", re.IGNORECASE)
_LEFT_OUT: Final = object()


def looks_personal(key: str, value: Any) -> bool:
    """A key named like personal data (unless its value is a SHA-256 hex digest), a string
    holding an email address whatever its key, or a key that is itself an email address."""
    text = isinstance(value, str)
    if text and "@" in value and contains_email(value):
        return True
    if not _personal_key(key):
        return False
    return not (text and is_sha256_hex(value.strip())) or contains_email(key)


@lru_cache(maxsize=4096)  # the case-blind search costs ~1 µs; clients repeat the same keys
def _personal_key(key: str) -> bool:
    return contains_email(key) or _PII_KEY.search(key) is not None


def shown_key(key: str) -> str:
    """``key`` as a path or a message may show it: an email address used as a key is not."""
    return "<email address>" if contains_email(key) else key


_SEND_HASHED: Final = "send email and phone hashed, in the top-level email_hashed and phone_number_hashed"


def without_personal(value: Any, path: str, report: Report) -> Any:
    """``value`` (parsed JSON under ``path``) without what looks like personal data, each drop
    warned about at its own path; ``value`` itself, untouched, when nothing is dropped.

    In an object, a key that ``looks_personal`` is left out, whatever its value holds. In an
    array, an item that is a string holding an email address is replaced by null, so that
    arrays sent side by side (``af_content_id``, ``af_price``, ``af_quantity``) stay aligned.
    Phone numbers are recognised by their key only, never by their value."""
    if isinstance(value, dict):
        kept: dict[str, Any] | None = None
        for i, (key, item) in enumerate(value.items()):
            if looks_personal(key, item):
                shown = shown_key(key)
                what = (
                    "holds an email address"
                    if isinstance(item, str) and contains_email(item)
                    else "looks like personal data"
                )
                report.warn(
                    join(path, shown),
                    "plain_pii_dropped",
                    f"`{shown}` {what}: it was dropped, and {top_key(path)} is stored and relayed without it "
                    f"({_SEND_HASHED})",
                )
                new: Any = _LEFT_OUT
            elif isinstance(item, (dict, list)):
                new = without_personal(item, join(path, key), report)
            else:
                new = item
            if new is not item and kept is None:
                kept = dict(itertools.islice(value.items(), i))
            if kept is not None and new is not _LEFT_OUT:
                kept[key] = new
        return value if kept is None else kept
    if isinstance(value, list):
        items: list[Any] | None = None
        for i, item in enumerate(value):
            if isinstance(item, str) and contains_email(item):
                report.warn(
                    join(path, i),
                    "plain_pii_dropped",
                    "this item holds an email address: it was replaced by null, so that arrays sent side by "
                    f"side stay aligned, and {top_key(path)} is stored and relayed without it ({_SEND_HASHED})",
                )
                new = None
            elif isinstance(item, (dict, list)):
                new = without_personal(item, join(path, i), report)
            else:
                new = item
            if new is not item and items is None:
                items = value[:i]
            if items is not None:
                items.append(new)
        return value if items is None else items
    return value
