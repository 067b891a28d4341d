"""The guard of a request: what its process or pause fault must never touch,
from the agent's own lineage, the connections of whoever asked, and the
agent's denylist."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

from agent.core.injector import InjectorContext, RequestContext
from agent.faults.process.matching import Guard
from agent.kernel.procs import sockets, table


def peer_endpoint(peer: str) -> tuple[sockets.Address, int] | None:
    """('ipv4:127.0.0.1:4242' or 'ipv6:[::1]:4242') as an address and port."""
    scheme, _, rest = urllib.parse.unquote(peer).partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return None
    host, _, port = rest.rpartition(":")
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]), int(port)
    except ValueError:
        return None


def request_guard(ctx: InjectorContext, request: RequestContext, allow_denylisted: bool) -> Guard:
    me = ctx.agent_pid
    protected = {p: "an ancestor of the agent" for p in table.ancestors(me)}
    protected[me] = "the agent itself"
    protected[1] = "pid 1 (init)"
    # Only the sockets here: which process holds one is asked of each candidate
    # (reading every process's descriptors would cost more than the fault).
    whose: dict[tuple[sockets.Address, int], str] = {}
    for peer, who in ((request.lease_peer, "lease holder"), (request.caller_peer, "caller")):
        end = peer_endpoint(peer) if peer else None
        if end is not None:
            whose[end] = who
    connections: dict[int, str] = {}
    for end, inodes in sockets.inodes_bound_to(list(whose)).items():
        for inode in inodes:
            connections[inode] = f"holds the {whose[end]}'s connection to this agent"
    denylist = tuple(re.compile(p) for p in ctx.limits.process_denylist)
    return Guard(protected, denylist, allow_denylisted, connections)
