"""Envoy socket addresses, shared by the listener and every cluster."""

from __future__ import annotations

import ipaddress

from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress


def socket_address(host: str, port: int) -> Address:
    """A TCP address (Envoy's default protocol) for a host name or an IP literal."""
    return Address(socket_address=SocketAddress(address=host, port_value=port))


def is_ip(host: str) -> bool:
    """An IP literal needs a STATIC cluster; a name needs DNS."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
