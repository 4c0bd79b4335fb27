"""Personal data under the keys of an Axon event that the API does not define.

``standard`` and ``lead_gen`` keep unknown keys (with ``unknown_field``); their values are the
one place where the schema cannot see a plain email or phone. The rule is AppsFlyer's
(``capigate/personal.py``), applied at any depth: a key named like personal data, or an
email-shaped value or a phone number in international form under any key, is dropped with
``plain_pii_dropped`` at its path. In
``user_data``, a look-alike of ``email`` or ``phone`` (``em``, ``email_address``,
``phone_number``, ``mobile`` ...) is instead normalised and hashed under its own key, with
``plain_pii_hashed``, as ``email`` and ``phone`` are; so are Meta's Conversions API names
(``em``, ``ph``), and its other names of a person (``fn``, ``ln``, ``db``, ``ge``, ``ct``,
``st``) are dropped there: a client moving over from Meta sends them, plain, where Axon defines
none. ``lead_gen_restricted`` refuses unknown keys, so it never reaches this.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from capigate.axon.schema import DATA_SCHEMAS, Item, MeasurementPartnerData, ServerEvent, UserData, field_names
from capigate.checking import Report, join
from capigate.identity import InvalidIdentifier, contains_email, hash_email, hash_phone, is_sha256_hex, revealed_email
from capigate.iso import COUNTRY_CODES
from capigate.personal import held, looks_personal, shown_key, without_personal

__all__ = ["without_personal_unknowns"]

_SEND_HASHED: Final = "send email and phone in user_data.email and user_data.phone, which are hashed"
_EMAIL_KEY = re.compile(r"^em$|e-?mail", re.IGNORECASE)
_PHONE_KEY = re.compile(r"^ph$|phone|mobile|^tel", re.IGNORECASE)
_EVENT_KEYS = field_names(ServerEvent)
_USER_KEYS = field_names(UserData)
_ITEM_KEYS = field_names(Item)
_MPD_KEYS = field_names(MeasurementPartnerData)
_NO_KEYS: frozenset[str] = frozenset()
# Meta's user_data names of a person (email, phone, first and last name, birth date, gender,
# city, state), each a value or a list of them, personal in user_data only: elsewhere two
# letters are as often a count or a status.
_META_PERSON_KEYS: Final = frozenset({"em", "ph", "fn", "ln", "db", "dob", "ge", "ct", "st"})

_Nested = dict[str, Callable[[Any, str, Report], Any]]
_LookAlike = Callable[[str, Any, str, Report], "str | list[str] | None"]


def without_personal_unknowns(event: dict[str, Any], path: str, report: Report) -> dict[str, Any]:
    """``event`` without personal data under its unknown keys; ``event`` itself when there is
    none. Raises capigate.personal.TooDeep when an unknown value nests too deep."""
    name = event.get("name")
    schema = DATA_SCHEMAS.get(name) if isinstance(name, str) else None
    data_keys = field_names(schema) if schema is not None else _NO_KEYS
    user = event.get("user_data")
    country = user.get("country_code") if isinstance(user, dict) else None
    region = country.upper() if isinstance(country, str) and country.upper() in COUNTRY_CODES else None

    def look_alike(key: str, value: Any, here: str, report: Report) -> str | list[str] | None:
        return _look_alike(key, value, here, report, region)

    def user_data(value: Any, here: str, report: Report) -> Any:
        if not isinstance(value, dict):
            return value
        return _clean(value, _USER_KEYS, here, report, {}, look_alike, _personal_in_user_data)

    def data(value: Any, here: str, report: Report) -> Any:
        return _clean(value, data_keys, here, report, _DATA_NESTED) if isinstance(value, dict) else value

    nested: _Nested = {"user_data": user_data, "data": data, "measurement_partner_data": _measurement}
    return _clean(event, _EVENT_KEYS, path, report, nested)


def _items(value: Any, path: str, report: Report) -> Any:
    if not isinstance(value, list):
        return value
    out = [
        _clean(item, _ITEM_KEYS, join(path, i), report, {}) if isinstance(item, dict) else item
        for i, item in enumerate(value)
    ]
    return value if all(a is b for a, b in zip(out, value, strict=True)) else out


def _measurement(value: Any, path: str, report: Report) -> Any:
    return _clean(value, _MPD_KEYS, path, report, {}) if isinstance(value, dict) else value


_DATA_NESTED: Final[_Nested] = {"items": _items, "results": _items}


def _clean(
    obj: dict[str, Any],
    known: frozenset[str],
    path: str,
    report: Report,
    nested: _Nested,
    look_alike: _LookAlike | None = None,
    personal: Callable[[str, Any], bool] = looks_personal,
) -> dict[str, Any]:
    """``obj`` with its unknown keys treated: dropped when ``personal``, unless ``look_alike``
    (user_data's) hashes them."""
    out: dict[str, Any] | None = None
    for key, value in obj.items():
        if key in known:
            inner = nested.get(key)
            if inner is None:  # the common case: a defined field, left to the schema
                if out is not None:
                    out[key] = value
                continue
            new = inner(value, join(path, key), report)
        elif personal(key, value):
            here = join(path, shown_key(key))
            new = look_alike(key, value, here, report) if look_alike is not None else None
            if new is None:
                report.warn(
                    here,
                    "plain_pii_dropped",
                    f"`{shown_key(key)}` {held(value)}: it was dropped, and the event is stored and relayed "
                    f"without it ({_SEND_HASHED})",
                )
                out = _copy_until(obj, key) if out is None else out
                continue
        elif isinstance(value, (dict, list)):
            new = without_personal(value, join(path, key), report, _SEND_HASHED, 1)
        else:
            new = value
        if new is not value and out is None:
            out = _copy_until(obj, key)
        if out is not None:
            out[key] = new
    return obj if out is None else out


def _copy_until(obj: dict[str, Any], stop: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == stop:
            return out
        out[key] = value
    return out


def _personal_in_user_data(key: str, value: Any) -> bool:
    """``looks_personal``, and Meta's names of a person's data, unless already hashed (a list
    of them too)."""
    if looks_personal(key, value):
        return True
    if key.lower() not in _META_PERSON_KEYS:
        return False
    values = value if isinstance(value, list) else [value]
    return not all(isinstance(v, str) and is_sha256_hex(v.strip()) for v in values)


def _look_alike(key: str, value: Any, path: str, report: Report, region: str | None) -> str | list[str] | None:
    """The hash of a user_data look-alike of email or phone by its key (each one's, in a list:
    Meta takes ``em`` and ``ph`` as lists too), or None to drop it."""
    values = value if isinstance(value, list) and value else [value]
    if not all(isinstance(v, str) for v in values) or contains_email(key):
        return None
    # By its key only: an email address under another key (``note``) is dropped, as it is
    # anywhere else, not taken for user_data.email.
    phone_like = _PHONE_KEY.search(key) is not None and not any(contains_email(v) for v in values)
    email_like = not phone_like and _EMAIL_KEY.search(key) is not None
    if not (phone_like or email_like):
        return None
    try:
        digests = [hash_phone(v, region) if phone_like else hash_email(revealed_email(v)) for v in values]
    except InvalidIdentifier:
        return None
    like = "phone" if phone_like else "email"
    report.warn(
        path,
        "plain_pii_hashed",
        f"`{key}` looks like user_data.{like}: it was normalised and hashed as {like} is, under its own key "
        f"(send it as `{like}`)",
    )
    return digests if isinstance(value, list) else digests[0]
