"""The rules on an Axon event's ``user_data``: identifiers present, codes valid, email and
phone normalised and hashed as AppLovin hashes them.

Each rule is a function of the typed ``UserData``, so the checked path and a typed fast path
share them."""

from __future__ import annotations

from typing import Final

import msgspec

from capigate.addresses import NOT_AN_ADDRESS, address_kind, not_an_address
from capigate.axon.profiles import Profile
from capigate.axon.schema import OS_VALUES, UserData
from capigate.checking import Report, you_mean
from capigate.identity import (
    HashedPhone,
    InvalidIdentifier,
    hash_email,
    hash_phone_checked,
    is_international_phone,
    not_possible_phone,
    trunk_prefix_removed,
)
from capigate.iso import COUNTRY_CODE_MEANT, COUNTRY_CODES
from capigate.matchkeys import ZERO_UUID

__all__ = ["USER_FIELDS", "check_user_data", "hashed_identifiers", "is_ip"]

_APP_EVENTS = frozenset({"app_open"})
BLANK_USER_AGENT: Final = "client_user_agent must not be blank: send the User-Agent header of the device's own request"
_OS_MESSAGE = f"`os` is one of {', '.join(sorted(OS_VALUES))}; kept as sent"


def is_ip(text: str) -> bool:
    return address_kind(text) != NOT_AN_ADDRESS


def check_user_data(user: UserData, path: str, profile: Profile, report: Report, name: object = None) -> dict[str, str]:
    """Checks the user_data of the event at ``path`` (named ``name``); returns the fields whose
    stored form differs (hashes, codes). ``user`` is a UserData or its strict variant (the
    typed path's), whose fields are in the same order (USER_FIELDS)."""
    # Its fields in one call: from compiled code, each attribute read alone costs as much as a
    # rule, and an event reads some fifteen.
    u = _astuple(user)
    # Typed, so that mypyc runs str's own methods on them, not a method looked up by name.
    esi: str = u[_ESI]
    sent_ip: str = u[_IP]
    agent: str = u[_UA]
    os_sent: str | None = u[_OS]
    country: str | None = u[_COUNTRY]
    if esi == "web" and isinstance(name, str) and name in _APP_EVENTS:
        report.warn(
            f"{path}.user_data.esi", "app_event_on_web", f"`{name}` is an app event, but esi is web; kept as sent"
        )
    kind = address_kind(sent_ip)
    trimmed = None
    if kind is not None:  # rare: the path is only built then
        trimmed = _ip_problem(kind, sent_ip, f"{path}.user_data.client_ip_address", report)
    # "" is the schema's (invalid_length); " " passed it, and counted as one (a trial)
    if agent.isspace():
        report.error(f"{path}.user_data.client_user_agent", "blank_user_agent", BLANK_USER_AGENT)
    if not _any_given(u, profile):
        report.error(
            f"{path}.user_data", "missing_identifier", f"send at least one identifier: {', '.join(profile.identifiers)}"
        )
    os_name = os_sent
    if os_name is not None and os_name not in OS_VALUES:  # rare: the known values pass one lookup
        os_name = _os_value(os_name, f"{path}.user_data.os", report)
    if u[_IFA] == ZERO_UUID or u[_IDFV] == ZERO_UUID:  # rare: two comparisons on the usual event
        _zeroed_device_ids(user, path, report)
    sent_country = country
    if country is not None and country not in COUNTRY_CODES:  # a known code is upper-case already
        country = country.upper()
        if country not in COUNTRY_CODES:
            meant = COUNTRY_CODE_MEANT.get(country)
            report.error(
                f"{path}.user_data.country_code",
                "unknown_country",
                "not an ISO 3166-1 alpha-2 country code" + (you_mean(meant) if meant else ""),
            )
    user_id: str | None = u[_USER_ID]
    if profile.numeric_user_id and user_id is not None and not user_id.isdigit():
        report.error(f"{path}.user_data.user_id", "invalid_format", "user_id must be numeric in this profile")
    region = country if country in COUNTRY_CODES else None
    normalised = hashed_identifiers(u[_EMAIL], u[_PHONE], region, path, report)
    if country is not None and country != sent_country:
        normalised["country_code"] = country
    if trimmed is not None:
        normalised["client_ip_address"] = trimmed
    if os_name is not None and os_name != os_sent:
        normalised["os"] = os_name
    zip_code: str | None = u[_ZIP] if country == "US" else None
    if zip_code is not None:
        zip5 = zip_code.strip()[:5]  # ZIP+4 and spaces dropped
        if zip5 != zip_code and not is_international_phone(zip_code):  # rules.without_phones drops it whole
            normalised["zip"] = zip5
    return normalised


_astuple: Final = msgspec.structs.astuple
# UserData's fields in order, as astuple gives them (the strict variant's alike): the rules
# here and the typed path (typed._user_phone_00) read them by these positions.
USER_FIELDS: Final = tuple(f.name for f in msgspec.structs.fields(UserData))
assert USER_FIELDS == (
    "client_ip_address", "client_user_agent", "esi", "aleid", "axwrt", "alart", "client_id", "user_id", "email",
    "phone", "country_code", "zip", "sid", "ifa", "idfv", "os",
), USER_FIELDS  # fmt: skip
assert HashedPhone.__struct_fields__ == ("digest", "possible", "with_country_code", "trunk_prefix_removed")
# Where USER_FIELDS holds what the rules read: literal ints, which mypyc compiles in (a global read
# is a dict lookup).
_IP: Final = 0  # client_ip_address
_UA: Final = 1  # client_user_agent
_ESI: Final = 2  # esi
_USER_ID: Final = 7  # user_id
_EMAIL: Final = 8  # email
_PHONE: Final = 9  # phone
_COUNTRY: Final = 10  # country_code
_ZIP: Final = 11  # zip
_IFA: Final = 13  # ifa
_IDFV: Final = 14  # idfv
_OS: Final = 15  # os
# A profile's name -> its identifiers and where user_data's fields hold them (by name: a
# string's hash is kept, a tuple's is computed at each look-up).
_SPOTS: Final[dict[str, tuple[tuple[str, ...], tuple[int, ...]]]] = {}


def _any_given(fields: tuple[object, ...], profile: Profile) -> bool:
    """Whether the user_data whose fields are ``fields`` (USER_FIELDS' order) gives one of the
    profile's identifiers."""
    keys = profile.identifiers
    known = _SPOTS.get(profile.name)
    if known is None or known[0] is not keys:
        known = _SPOTS[profile.name] = (keys, tuple(USER_FIELDS.index(key) for key in keys))
    for spot in known[1]:  # noqa: SIM110 (a loop, not any() over a generator: on every event)
        if fields[spot]:
            return True
    return False


def _os_value(sent: str, path: str, report: Report) -> str:
    """The os value stored for ``sent``, which is not one of OS_VALUES: the known value it
    spells in another case (``Android``), said so; else ``sent`` itself, with a warning."""
    lowered = sent.lower()
    if lowered in OS_VALUES:
        report.warn(path, "not_lower_case", f"`os` values are lower-case; it was read as {lowered}")
        return lowered
    report.warn(path, "unknown_enum", _OS_MESSAGE)
    return sent


def _zeroed_device_ids(user: UserData, path: str, report: Report) -> None:
    """The all-zeros device ids: a device id the user withheld (iOS without ATT consent, Android
    with ad personalisation off), which AppLovin cannot match; AppsFlyer's rule and code."""
    if user.ifa == ZERO_UUID:
        report.warn(
            f"{path}.user_data.ifa",
            "zeroed_device_id",
            "ifa is all zeros (ad tracking not allowed on the device): AppLovin cannot match it",
        )
    if user.idfv == ZERO_UUID:
        report.warn(
            f"{path}.user_data.idfv",
            "zeroed_device_id",
            "idfv is all zeros, not the device's vendor id: AppLovin cannot match it",
        )


def _ip_problem(kind: str, sent: str, path: str, report: Report) -> str | None:
    """Says what is wrong with the address ``sent`` (of ``kind``); the address trimmed when
    spaces around it were all that was wrong (as email, phone and zip are trimmed), else None."""
    trimmed = sent.strip()
    if kind == NOT_AN_ADDRESS and trimmed and trimmed != sent:
        inner = address_kind(trimmed)
        if inner != NOT_AN_ADDRESS:
            if inner is not None:
                _not_public(inner, path, report)
            return trimmed
    if kind == NOT_AN_ADDRESS:
        why = not_an_address(trimmed)[0] if trimmed else "it is only spaces"
        report.error(
            path, "invalid_ip", f"not an IPv4 or IPv6 address: {why}" if why else "not an IPv4 or IPv6 address"
        )
    else:
        _not_public(kind, path, report)
    return None


def _not_public(kind: str, path: str, report: Report) -> None:
    report.warn(
        path,
        "non_public_ip",
        f"client_ip_address is {kind}, not the device's public address: AppLovin accepts it but cannot "
        "attribute the event by it; send the address the device connected from",
    )


def hashed_identifiers(
    email: str | None, phone_number: str | None, region: str | None, path: str, report: Report
) -> dict[str, str]:
    """The SHA-256 of user_data's email and phone, each normalised as AppLovin does; a phone
    without ``+``/``00`` is read in ``region`` (the event's valid country_code) when known."""
    hashed: dict[str, str] = {}
    if email is not None:
        try:
            hashed["email"] = hash_email(email)
        except InvalidIdentifier as exc:
            report.error(f"{path}.user_data.email", "invalid_email", str(exc))
    if phone_number is not None:
        try:
            phone = hash_phone_checked(phone_number, region)
        except InvalidIdentifier as exc:
            report.error(f"{path}.user_data.phone", "invalid_phone", str(exc))
        else:
            digest, possible, with_country_code, trunk_removed = _astuple(phone)  # one call, not four reads
            hashed["phone"] = digest
            if not (with_country_code and possible) or trunk_removed:
                _warn_phone(phone, f"{path}.user_data.phone", report)
    return hashed


def _warn_phone(phone: HashedPhone, path: str, report: Report) -> None:
    if not phone.with_country_code:
        report.warn(
            path,
            "phone_without_country_code",
            "the number has no country code (+ or 00) and the event no country_code: its digits were hashed "
            "as sent, and will only match if they include the country code (AppLovin expects the number in "
            "international form, like 16505551212)",
        )
    elif not phone.possible:
        report.warn(path, "phone_not_possible", not_possible_phone("phone"))
    else:  # phone.trunk_prefix_removed
        report.warn(path, "phone_trunk_prefix_removed", trunk_prefix_removed("phone"))
