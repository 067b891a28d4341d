"""What network faults must never cut off: the agent's listeners (gRPC and
metrics on TCP, lease heartbeats on UDP) and its controllers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from agent.core.injector import InjectorContext, RequestContext
from agent.faults.network.traffic import peer_addresses
from agent.kernel import sysinfo

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Protected:
    peers: tuple[Address, ...]
    listen_ports: tuple[int, ...]
    udp_ports: tuple[int, ...] = ()  # the lease-heartbeat socket

    def describe(self) -> str:
        parts = [str(a) for a in self.peers] + [f"tcp port {p}" for p in self.listen_ports]
        return ",".join(parts + [f"udp port {p}" for p in self.udp_ports])


def listen_ports(listen: str) -> tuple[int, ...]:
    """The configured gRPC port plus every TCP port the agent listens on
    (gRPC and metrics; the configured port may be 0, chosen at bind time)."""
    ports: set[int] = set()
    _, _, port = listen.rpartition(":")
    if port.isdigit() and int(port):
        ports.add(int(port))
    ports |= sysinfo.listening_tcp_ports()
    return tuple(sorted(ports))


def protected(ctx: InjectorContext, request: RequestContext) -> Protected:
    peers: list[Address] = []
    for peer in (request.lease_peer, request.caller_peer):
        for addr in peer_addresses(peer):
            if addr not in peers:
                peers.append(addr)
    udp = tuple(sorted(sysinfo.bound_udp_ports()))
    return Protected(tuple(peers), listen_ports(ctx.listen), udp)
