"""Which client a request comes from, for the per-address attempt limits.

The address is the connection's peer. Only when the peer is a trusted proxy (`CFD_TRUSTED_PROXIES`) is
`X-Forwarded-For` read, from the right: each trusted hop's entry names the hop before it, and the first
address that is not a trusted proxy is the client. Entries left of it were written by the client and are
ignored, so a client cannot choose its own address. IPv6 clients are counted per /64 network, the block
one subscriber usually gets, so that walking through one's own addresses does not buy more attempts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "unknown"


def _parse(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddresses:
    """Finds a request's client address, trusting `X-Forwarded-For` only from `trusted_proxies`."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = [ipaddress.ip_network(network, strict=False) for network in trusted_proxies]

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def client(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> IPAddress | None:
        """The client's address, given the connection's peer and the `X-Forwarded-For` header lines."""
        address = _parse(peer) if peer else None
        if address is None or not self.trusted:
            return address
        hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
        while self._is_trusted(address) and hops:
            forwarded = _parse(hops.pop())
            if forwarded is None:  # a trusted proxy wrote something unreadable: it is the last hop known
                break
            address = forwarded
        return address

    def limit_key(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str:
        """The client as the attempt limits count it: an IPv4 address, or an IPv6 /64 network."""
        address = self.client(peer, forwarded_for)
        if address is None:
            return UNKNOWN
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)
