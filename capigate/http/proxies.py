"""The client's address behind load balancers: ``X-Forwarded-For``, believed only as far as
the proxies named in ``[server] trusted_proxies`` wrote it."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

__all__ = ["TrustedProxies"]


class TrustedProxies:
    def __init__(self, networks: Sequence[str]) -> None:
        self._networks: tuple[IPv4Network | IPv6Network, ...] = tuple(ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str | None) -> bool:
        try:
            ip = ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The right-most ``X-Forwarded-For`` hop that is not a trusted proxy, if the peer is
        one; else the peer. Read from the right because a client can write any hops it likes
        on the left: only what trusted proxies appended can be believed."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop if _is_ip(hop) else peer
        return hops[0]  # every hop is a trusted proxy: the first one is where it began


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
