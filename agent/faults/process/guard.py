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
    connections: set[int] = set()
    for peer, whose in ((request.lease_peer, "lease holder"), (request.caller_peer, "caller")):
        end = peer_endpoint(peer) if peer else None
        for pid in sockets.owners(*end) if end else ():
            protected.setdefault(pid, f"holds the {whose}'s connection to this agent")
            connections.add(pid)
    denylist = tuple(re.compile(p) for p in ctx.limits.process_denylist)
    return Guard(protected, denylist, allow_denylisted, frozenset(connections))
