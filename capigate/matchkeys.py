"""Match keys: the identifiers an upstream matches a conversion to a user with, and how each
arrived in an accepted event, packed in one integer per event (``NewEvent.match_keys``).

Each key takes two bits, at twice its position in its API's list:

    0  missing
    1  sent (an identifier that is never hashed: a click id, a device id, an IP and UA)
    2  sent plain and hashed here (email, phone; an identifier holding either)
    3  sent already hashed (a SHA-256 hex digest)

and ``DEDUPE_BIT`` says the event carried a ``dedupe_id``. The rollup of these integers per
source, event name and hour is what ``GET /api/quality`` reads (capigate/inspector/quality.py);
the rules that turn it into a verdict are written down in docs/quality.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal

import msgspec

from capigate.identity import is_sha256_hex

__all__ = [
    "APPSFLYER_KEYS",
    "ARRIVALS",
    "AXON_KEYS",
    "DEDUPE_BIT",
    "ZERO_UUID",
    "Arrival",
    "appsflyer_match_keys",
    "arrival",
    "axon_match_keys",
    "identifiers_treated",
    "keys_of",
]

Arrival = Literal["missing", "sent", "hashed_here", "already_hashed"]
ARRIVALS: Final[tuple[Arrival, ...]] = ("missing", "sent", "hashed_here", "already_hashed")
_SENT, _HASHED_HERE, _ALREADY_HASHED = 1, 2, 3

# Axon: user_data fields; "ip_ua" is client_ip_address and client_user_agent together.
AXON_KEYS: Final = ("aleid", "axwrt", "alart", "client_id", "user_id", "email", "phone", "ifa", "idfv", "ip_ua")
# AppsFlyer: top-level fields; "email" is email_hashed, "phone" either phone_number_*_hashed.
APPSFLYER_KEYS: Final = (
    "appsflyer_id", "customer_user_id", "idfa", "advertising_id", "oaid", "amazon_aid", "idfv", "email", "phone", "ip",
)  # fmt: skip
_AXON_HASHED: Final = {"email": ("email",), "phone": ("phone",)}
_APPSFLYER_HASHED: Final = {
    "email": ("email_hashed",),
    "phone": ("phone_number_hashed", "phone_number_e164_hashed"),
}
ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"  # a device id the user withheld: no match
DEDUPE_BIT: Final = 1 << 40


def keys_of(api: str) -> tuple[str, ...]:
    return AXON_KEYS if api == "axon" else APPSFLYER_KEYS


def arrival(mask: int, position: int) -> Arrival:
    return ARRIVALS[(mask >> (2 * position)) & 3]


def _hashable(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    if len(value) < 64:  # too short for a digest, spaces or not: the usual plain email or phone
        return _HASHED_HERE if value and not value.isspace() else 0
    text = value.strip()
    if not text:
        return 0
    return _ALREADY_HASHED if is_sha256_hex(text) else _HASHED_HERE


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != ZERO_UUID


def axon_match_keys(user: Any, has_dedupe_id: bool) -> int:
    """The match keys of one accepted Axon event from its typed ``user_data`` (a UserData
    Struct, or its strict variant) as sent, before its email and phone were hashed (``None``:
    no user_data). Its identifier fields are str or None."""
    mask = DEDUPE_BIT if has_dedupe_id else 0
    if user is None:
        return mask
    spots = _SPOTS.get(type(user))
    if spots is None:  # not ``or``: mypyc miscompiles a tuple type's ``or`` (a C type error)
        spots = _spots_of(type(user))
    plain, ip_at, ua_at, email_at, phone_at = spots  # a tuple's, not a NamedTuple's: no attribute reads
    values = _astuple(user)  # one C call, not a getattr per field
    for index, sent in plain:
        value = values[index]
        if value and value != ZERO_UUID:  # _given, inlined
            mask |= sent
    ip, ua = values[ip_at], values[ua_at]
    if ip and ua and ip != ZERO_UUID and ua != ZERO_UUID:
        mask |= _IP_UA_SENT
    return mask | _hashable(values[email_at]) << _EMAIL_SHIFT | _hashable(values[phone_at]) << _PHONE_SHIFT


def identifiers_treated(mask: int, hashed: Iterable[str], dropped: Iterable[str]) -> int:
    """``mask`` with the Axon identifiers (``user_id``, ``client_id``) the rules hashed, for
    holding an email address or a phone number (``plain_pii_hashed``), as hashed here, and
    those they dropped as missing: counted as sent, they read as kept as they came."""
    for key, how in [*((k, _HASHED_HERE) for k in hashed), *((k, 0) for k in dropped)]:
        shift = 2 * AXON_KEYS.index(key)
        mask = (mask & ~(3 << shift)) | (how << shift)
    return mask


# Where a user_data Struct type holds each key: (field index, its bits when sent) per plain key,
# then the indexes of client_ip_address, client_user_agent, email and phone.
_Spots = tuple[tuple[tuple[int, int], ...], int, int, int, int]


def _spots_of(kind: type) -> _Spots:
    fields: tuple[str, ...] = kind.__struct_fields__  # type: ignore[attr-defined]
    plain = tuple(
        (fields.index(k), _SENT << (2 * i)) for i, k in enumerate(AXON_KEYS) if k not in _AXON_HASHED and k != "ip_ua"
    )
    spots: _Spots = (
        plain,
        fields.index("client_ip_address"),
        fields.index("client_user_agent"),
        fields.index("email"),
        fields.index("phone"),
    )
    _SPOTS[kind] = spots
    return spots


_SPOTS: Final[dict[type, _Spots]] = {}
_astuple: Final = msgspec.structs.astuple
_IP_UA_SENT: Final = _SENT << (2 * AXON_KEYS.index("ip_ua"))
_EMAIL_SHIFT: Final = 2 * AXON_KEYS.index("email")
_PHONE_SHIFT: Final = 2 * AXON_KEYS.index("phone")


def appsflyer_match_keys(payload: dict[str, Any], hashed_here: set[str], has_dedupe_id: bool) -> int:
    """The match keys of one accepted AppsFlyer event, from its stored payload (where every
    ``*_hashed`` value is a digest) and the paths the rules hashed (``plain_pii_hashed``)."""
    mask = DEDUPE_BIT if has_dedupe_id else 0
    for position, key in enumerate(APPSFLYER_KEYS):
        found = 0
        for name in _APPSFLYER_HASHED.get(key, ()):
            if _given(payload.get(name)):
                found = _HASHED_HERE if name in hashed_here else _ALREADY_HASHED
                break
        else:
            found = _SENT if key not in _APPSFLYER_HASHED and _given(payload.get(key)) else 0
        mask |= found << (2 * position)
    return mask
