"""A seeded population of realistic users: plain emails, valid E.164 phones, devices.

The gateway must normalise and hash ``email`` and ``phone``, so they come plain, in the
shapes real clients send (mixed case, stray spaces), and every phone is a number that
``phonenumbers`` accepts as valid for its country.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

__all__ = ["COUNTRIES", "User", "make_population"]

# Split at import time: one name per line would make this module mostly names.
_FIRST_NAMES = """
james mary john patricia robert jennifer michael linda david elizabeth william barbara richard
susan joseph jessica thomas sarah charles karen emma olivia liam noah sophia lucas mia hugo lea
louis chloe jonas lena felix anna paul marie lukas hannah ana joao maria pedro lucia rafael julia
arjun priya rahul ananya vikram sneha haruto yui sota hina yuto aoi oliver amelia harry isla jack
ava george grace
"""
_LAST_NAMES = """
smith johnson williams brown jones garcia miller davis rodriguez martinez wilson anderson taylor
thomas moore jackson martin lee thompson white harris clark lewis walker young allen king wright
scott hill green adams baker nelson carter mitchell mueller schmidt schneider fischer weber meyer
wagner becker dubois durand bernard moreau laurent silva santos oliveira souza pereira costa
sharma patel singh kumar gupta sato suzuki takahashi tanaka watanabe ito evans roberts walsh
murphy
"""
FIRST = tuple(_FIRST_NAMES.split())
LAST = tuple(_LAST_NAMES.split())

# country: (weight, currency, email domains)
COUNTRIES: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "US": (40, "USD", ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com")),
    "GB": (10, "GBP", ("gmail.com", "hotmail.co.uk", "btinternet.com", "outlook.com")),
    "DE": (10, "EUR", ("gmail.com", "gmx.de", "web.de", "t-online.de")),
    "FR": (10, "EUR", ("gmail.com", "orange.fr", "free.fr", "laposte.net")),
    "BR": (10, "BRL", ("gmail.com", "hotmail.com", "uol.com.br", "bol.com.br")),
    "IN": (10, "INR", ("gmail.com", "yahoo.co.in", "rediffmail.com")),
    "JP": (10, "JPY", ("gmail.com", "yahoo.co.jp", "docomo.ne.jp", "icloud.com")),
}

USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Mobile Safari/537.36",
)
UA_OS = ("ios", "android", "desktop_os", "desktop_os", "android")
US_AREA_CODES = (212, 646, 415, 650, 312, 305, 713, 206, 617, 404, 702, 303, 512, 971, 602)
PUBLIC_FIRST_OCTETS = (24, 68, 73, 81, 86, 92, 109, 151, 176, 187, 189, 201, 203)


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    client_id: str
    email: str  # plain, as a client would send it
    phone: str  # plain E.164
    country: str
    currency: str
    zip: str | None
    ip: str
    user_agent: str
    os: str
    ifa: str


def _email(rng: random.Random, first: str, last: str, domain: str, taken: set[str]) -> str:
    pattern = rng.randrange(4)
    if pattern == 0:
        local = f"{first}.{last}"
    elif pattern == 1:
        local = f"{first}{last}{rng.randrange(1, 100)}"
    elif pattern == 2:
        local = f"{first[0]}.{last}"
    else:
        local = f"{first}_{last}{rng.randrange(1960, 2008)}"
    address = f"{local}@{domain}"
    n = 2
    while address in taken:
        address = f"{local}{n}@{domain}"
        n += 1
    taken.add(address)
    style = rng.random()  # what normalisation must undo
    if style < 0.10:
        return address.title()
    if style < 0.15:
        return f" {address} "
    return address


def _phone(rng: random.Random, region: str) -> str:
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None
    digits = str(example.national_number)
    for _ in range(50):  # bounded: most draws are valid at the first try
        head = digits[: -len(digits) // 2]  # keep the operator prefix, vary the rest
        if region == "US":  # the example number's area code is one of 800 possible
            head = f"{rng.choice(US_AREA_CODES)}{rng.randrange(2, 10)}"
        tail = "".join(str(rng.randrange(10)) for _ in range(len(digits) - len(head)))
        candidate = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(head + tail))
        if phonenumbers.is_valid_number(candidate):
            return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.1:
        groups = ":".join(f"{rng.randrange(65536):x}" for _ in range(6))
        return f"2a02:{rng.randrange(4096):x}:{groups}"
    first = rng.choice(PUBLIC_FIRST_OCTETS)
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def make_population(size: int, seed: int = 7) -> list[User]:
    rng = random.Random(seed)
    regions = list(COUNTRIES)
    weights = [COUNTRIES[r][0] for r in regions]
    taken: set[str] = set()
    users: list[User] = []
    for i in range(size):
        region = rng.choices(regions, weights)[0]
        _, currency, domains = COUNTRIES[region]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        ua = rng.randrange(len(USER_AGENTS))
        users.append(
            User(
                user_id=f"u{100000 + i}",
                client_id=f"cid.{rng.getrandbits(48):012x}",
                email=_email(rng, first, last, rng.choice(domains), taken),
                phone=_phone(rng, region),
                country=region,
                currency=currency,
                zip=f"{rng.randrange(1000, 99999):05d}" if region == "US" else None,
                ip=_ip(rng),
                user_agent=USER_AGENTS[ua],
                os=UA_OS[ua],
                ifa=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            )
        )
    return users
