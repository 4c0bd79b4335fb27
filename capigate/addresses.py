"""IP addresses as both APIs read them: which text is an address, and which address cannot be
a device's public one (one rule, for Axon's ``client_ip_address`` and AppsFlyer's ``ip``).

AppLovin attributes an event by its address and AppsFlyer geolocates by it; both accept an
address of a private network, of the machine itself, of a link, of a carrier's NAT
(100.64.0.0/10) or no address at all (``0.0.0.0``, ``::``) and silently lose what it was for.
Such an address is kept, with a warning. The documentation ranges (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not warned about: the vendors' examples
and many test events use them, and warning there would teach people to ignore the warning
(Python's ``ipaddress`` calls them private: it is not used for this rule).
"""

from __future__ import annotations

import ipaddress
import re
from socket import AF_INET, AF_INET6, inet_pton
from typing import Final

__all__ = ["NOT_AN_ADDRESS", "address_kind", "not_an_address"]


def _networks(*table: tuple[str, str]) -> tuple[tuple[int, int, str], ...]:
    """(network, mask, what the address is) of each network, as integers."""
    out = []
    for text, what in table:
        net = ipaddress.ip_network(text)
        out.append((int(net.network_address), int(net.netmask), what))
    return tuple(out)


_V4: Final = _networks(
    ("0.0.0.0/8", 'an unspecified ("this network") address'),
    ("10.0.0.0/8", "a private network address"),
    ("100.64.0.0/10", "a carrier-grade NAT address (100.64.0.0/10)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private network address"),
    ("192.0.0.0/24", "a reserved address"),
    ("192.168.0.0/16", "a private network address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_V4_FIRST_OCTETS: Final = frozenset(
    octet for network, mask, _ in _V4 for octet in range(256) if (octet << 24 ^ network) & mask & 0xFF000000 == 0
)
_V6: Final = _networks(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("fc00::/7", "a private network address"),
    ("fe80::/10", "a link-local address"),
    ("ff00::/8", "a multicast address"),
)
_V4_MAPPED: Final = int(ipaddress.IPv6Address("::ffff:0.0.0.0"))
NOT_AN_ADDRESS: Final = ""
# socket's, as statics: a compiled module reads a name it imported from a dict, on every event.
_inet_pton: Final = inet_pton
_AF_INET: Final = int(AF_INET)
_AF_INET6: Final = int(AF_INET6)


def address_kind(text: str) -> str | None:
    """None for a public address (or a documentation one); ``NOT_AN_ADDRESS`` when ``text`` is
    not an IPv4 or IPv6 address; else what the address is (``"a private network address"``).
    One call on every event: the common public IPv4 address costs a parse and a set look-up."""
    # Only IPv6 text has a ":", and never IPv4 text: one parse decides.
    try:
        packed = _inet_pton(_AF_INET6 if ":" in text else _AF_INET, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL character
        return NOT_AN_ADDRESS
    if len(packed) == 4:
        return None if packed[0] not in _V4_FIRST_OCTETS else _v4(int.from_bytes(packed))
    if 0x20 <= packed[0] <= 0x3F:  # 2000::/3, global unicast: nearly every device's
        return None
    number = int.from_bytes(packed)
    if number >> 32 == _V4_MAPPED >> 32:
        return _v4(number & 0xFFFF_FFFF)
    return next((what for network, mask, what in _V6 if number & mask == network), None)


def _v4(number: int) -> str | None:
    if number >> 24 not in _V4_FIRST_OCTETS:
        return None
    return next((what for network, mask, what in _V4 if number & mask == network), None)


_WITH_PORT: Final = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):[0-9]+")
_BRACKETED: Final = re.compile(r"\[([0-9A-Fa-f:.]+)\]")
_LIST: Final = re.compile(r"[\s,;]+")
_ZONED: Final = re.compile(r"([0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)%[^\s,;%]+")


def not_an_address(text: str) -> tuple[str, str]:
    """Why ``text`` (the field's value, already trimmed: spaces around an address are left
    out) is no address, where it holds one written another way: a port after it, an IPv6 zone
    index after it (``%eth0``), the brackets of a URL's IPv6 host, a list (an ``X-Forwarded-For`` header pasted whole); each was told
    only "not an IPv4 or IPv6 address" (a trial). With the address it holds; ("", "") for any
    other text. The reason never quotes the value."""
    ported = _WITH_PORT.fullmatch(text)
    if ported is not None and address_kind(held := ported.group(1) or ported.group(2)) != NOT_AN_ADDRESS:
        return "a port follows it (address:port); send the address alone", held
    zoned = _ZONED.fullmatch(text)  # fe80::1%eth0: was told only "not an IPv4 or IPv6 address" (a trial)
    if zoned is not None and address_kind(held := zoned.group(1)) != NOT_AN_ADDRESS:
        why = (
            "an IPv6 zone index (a % and an interface) follows it, which names a network interface of the "
            "machine that saw the address and is not part of an address to send; send the address alone"
        )
        return why, held
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed is not None and address_kind(held := bracketed.group(1)) != NOT_AN_ADDRESS:
        return "an IPv6 address is sent without the [ ] a URL puts around it", held
    parts = [part for part in _LIST.split(text) if part]
    if len(parts) > 1 and address_kind(parts[0]) != NOT_AN_ADDRESS:
        why = "a list of addresses (an X-Forwarded-For header pasted whole, maybe); send the client's one address"
        return why, parts[0]
    return "", ""
