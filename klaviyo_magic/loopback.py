"""Whether a host is this machine. Shared by the connections (plain ``http://`` is allowed only to loopback)
and the sandbox (it listens only on loopback); the standard library only, so the sandbox stays independent
of the client side."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
