"""One client as the per-address limits count it: an IPv4 address, or an IPv6 address's /64.

An IPv6 subscriber (a home, a lab, any rented server) is given a /64 and may use any of its
2**64 addresses: counted one by one, a single host would get a fresh budget of login attempts,
sockets and landings from each. Its /64 is what an IPv4 address behind a NAT is.
"""

from __future__ import annotations

import ipaddress

SUBSCRIBER_PREFIX = 64


def counted_as(address: str) -> str:
    """The key `address` is counted under: its /64 for IPv6 (an IPv4-mapped one: the IPv4
    address), the address itself otherwise (also when it is no IP address at all)."""
    if ":" not in address:  # IPv4, or a name: as it is, without parsing (the join's hot path)
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    host_bits = 128 - SUBSCRIBER_PREFIX
    return f"{ipaddress.IPv6Address(int(ip) >> host_bits << host_bits)}/{SUBSCRIBER_PREFIX}"
