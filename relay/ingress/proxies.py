"""The one client address and scheme of a request: the peer's, unless the peer is a trusted proxy.

uvicorn runs with `proxy_headers` off, so `X-Forwarded-For` and `X-Forwarded-Proto` mean nothing
by default. With `trusted_proxies` set (addresses or CIDRs), a peer in that list may name the
client: the right-most `X-Forwarded-For` entry that is not itself a trusted proxy, and the
scheme from `X-Forwarded-Proto`. The result replaces the ASGI scope's `client` and `scheme`, so
the auth lockout, the console's loopback rule and the cookie's `Secure` flag all see the same one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """`["10.0.0.1", "192.168.0.0/16"]` → networks; raises ValueError naming a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return networks


def _trusted(host: str, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def resolve(
    peer: str, forwarded_for: list[str], forwarded_proto: list[str], scheme: str, networks: list[Network]
) -> tuple[str, str]:
    """The client address and scheme of a request from `peer` carrying these header values."""
    if not networks or not _trusted(peer, networks):
        return peer, scheme
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not an address: stop believing the chain here
        client = hop
        if not _trusted(hop, networks):
            break
    protos = [p.strip().lower() for value in forwarded_proto for p in value.split(",") if p.strip()]
    if protos and protos[-1] in ("http", "https"):
        scheme = protos[-1]
    return client, scheme


class TrustedProxies:
    """ASGI middleware applying `resolve` to every HTTP request's scope."""

    def __init__(self, app: Any, networks: list[Network]) -> None:
        self.app = app
        self.networks = networks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.networks and scope.get("client"):
            peer, port = scope["client"]
            xff = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            proto = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-proto"]
            client, scheme = resolve(peer, xff, proto, scope.get("scheme", "http"), self.networks)
            scope = {**scope, "client": (client, port), "scheme": scheme}
        await self.app(scope, receive, send)
