"""How many connections a fleet may keep open: one descriptor per agent it
has talked to, while gRPC keeps the connection (30 minutes idle, by default).

The soft descriptor limit is raised to the hard one first, as Go's runtime
does at start: the usual soft limit (1,024) would end a fleet of 2,000 agents
in EMFILE with most of the allowed descriptors unused. A fleet with more
agents than its budget (the limit, less RESERVE for everything else) could
still run out, so its channels close after IDLE_CLOSE_S without a call
(idle.py), and the next call opens another: the connections open at once
are then about a fan-out's call rate times IDLE_CLOSE_S, not one per agent,
and each fan-out pays a first call on most agents (docs/controller.md).
Leases need no connection meanwhile: datagrams renew them."""

from __future__ import annotations

import resource

RESERVE = 1024  # the store, the HTTP server's clients, logs, the datagram sockets
IDLE_CLOSE_S = 1.0  # longer than an agent's pause between calls within a step


def raise_soft_limit() -> int:
    """The soft RLIMIT_NOFILE raised to the hard one where allowed; the soft
    limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an infinite hard limit, or a sandbox
            pass
    return soft


def fits(agents: int, limit: int) -> bool:
    """Whether a connection per agent fits under the descriptor limit; if not,
    the fleet's channels close when idle (idle.py)."""
    return agents <= limit - RESERVE
