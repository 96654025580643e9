"""The proxies whose forwarded headers mastok believes: MASTOK_TRUSTED_PROXIES, made addresses.

Entries are addresses, networks (`10.89.0.0/24`) or host names; a name is resolved once, when
mastok starts, to every address it has (a compose service name, say: `proxy`). uvicorn then
takes `X-Forwarded-For` and `X-Forwarded-Proto` from those addresses only.
"""

from __future__ import annotations

import ipaddress
import socket


class UnknownProxy(Exception):
    """A name in MASTOK_TRUSTED_PROXIES does not resolve."""


def trusted_addresses(setting: str) -> list[str]:
    """The addresses and networks of `setting` (comma-separated), names resolved."""
    found: list[str] = []
    for entry in (part.strip() for part in setting.split(",")):
        if not entry:
            continue
        if _is_address(entry):
            found.append(entry)
            continue
        try:
            infos = socket.getaddrinfo(entry, None, proto=socket.IPPROTO_TCP)
        except OSError as error:
            message = f"MASTOK_TRUSTED_PROXIES: cannot resolve {entry!r}: {error}"
            raise UnknownProxy(message) from None
        found += sorted({str(info[4][0]) for info in infos} - set(found))
    return found


def _is_address(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
