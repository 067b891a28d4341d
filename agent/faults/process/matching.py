"""Which processes a process fault reaches: the match (where, and every filter
given), the safety rules that refuse a request before anything happens, and
the choice of count, percent, newest, oldest or random among the matches."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.core.errors import FailedPrecondition, InvalidArgument
from agent.kernel.procs import INSTANCE_FLAG, sockets, table
from agent.kernel.procs.table import ProcInfo
from agent.workers.zygote import ZYGOTE_FLAG
from brownout.v1 import agent_pb2 as pb

ORDERS = {
    pb.PROCESS_ORDER_UNSPECIFIED: "random",
    pb.PROCESS_ORDER_RANDOM: "random",
    pb.PROCESS_ORDER_NEWEST: "newest",
    pb.PROCESS_ORDER_OLDEST: "oldest",
}


MAX_PATTERN = 512  # characters of a comm or cmdline pattern


def compile_pattern(field: str, text: str) -> re.Pattern[str] | None:
    if not text:
        return None
    if len(text) > MAX_PATTERN:
        raise InvalidArgument(field, f"is {len(text)} characters long; at most {MAX_PATTERN}")
    try:
        return re.compile(text)
    except re.error as exc:
        raise InvalidArgument(field, f"{text!r} is not a regular expression: {exc}") from None


def user_id(field: str, text: str) -> int | None:
    """A user name or numeric uid, as the uid; None when not given."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    uid = table.uid_of(text)
    if uid is None:
        raise InvalidArgument(field, f"no user {text!r} on this node")
    return uid


@dataclass(frozen=True)
class Filters:
    comm: re.Pattern[str] | None = None
    cmdline: re.Pattern[str] | None = None
    uid: int | None = None

    @property
    def any(self) -> bool:
        return self.comm is not None or self.cmdline is not None or self.uid is not None

    def match(self, p: ProcInfo) -> bool:
        if self.comm is not None and not self.comm.fullmatch(p.comm):
            return False
        if self.cmdline is not None and not self.cmdline.search(" ".join(p.cmdline)):
            return False
        return self.uid is None or p.uid == self.uid


@dataclass(frozen=True)
class Guard:
    """What a process fault never touches, and why."""

    protected: dict[int, str]  # pid -> why (pid 1, the agent, its ancestors, the lease holder)
    denylist: tuple[re.Pattern[str], ...]
    allow_denylisted: bool
    # Sockets (inode -> why) of the caller's and the lease holder's
    # connections to the agent, when their end is on this node.
    connections: Mapping[int, str] = field(default_factory=dict)

    def connection(self, pid: int) -> str:
        """Why pid may not be touched for holding an asker's connection ("" if it holds none)."""
        if not self.connections:
            return ""
        held = sockets.socket_inodes(pid) & self.connections.keys()
        return self.connections[min(held)] if held else ""

    def refusal(self, p: ProcInfo) -> str:
        """Why p may not be touched ("" when it may)."""
        why = self.protected.get(p.pid) or self.connection(p.pid)
        if why:
            return why
        if p.kernel_thread:
            return "a kernel thread"
        if any(a.startswith(INSTANCE_FLAG) or a == ZYGOTE_FLAG for a in p.cmdline):
            return "a Brownout worker or fork server"
        if not self.allow_denylisted:
            for pattern in self.denylist:
                if pattern.fullmatch(p.comm):
                    return (
                        f"on the agent's process denylist ({pattern.pattern!r});"
                        " allow_denylisted overrides it for one request"
                    )
        return ""


def describe(p: ProcInfo) -> str:
    command = p.command
    return f"pid {p.pid} ({command[:80]}{'...' if len(command) > 80 else ''})"


def refuse_unsafe(
    chosen: Iterable[ProcInfo], guard: Guard, lead: str = "refused, nothing was signalled"
) -> None:
    """FailedPrecondition naming every process the guard refuses, grouped by reason."""
    by_reason: dict[str, list[ProcInfo]] = {}
    for p in chosen:
        if why := guard.refusal(p):
            by_reason.setdefault(why, []).append(p)
    if not by_reason:
        return
    parts = []
    for why, procs in by_reason.items():
        more = f" and {len(procs) - 3} more" if len(procs) > 3 else ""
        parts.append(f"{why}: {', '.join(describe(p) for p in procs[:3])}{more}")
    raise FailedPrecondition(f"{lead}: " + "; ".join(parts))


def safe(chosen: Iterable[ProcInfo], guard: Guard) -> list[ProcInfo]:
    """The chosen processes the guard allows (for a repeated kill's later rounds)."""
    return [p for p in chosen if not guard.refusal(p)]


def choose(
    matches: Sequence[ProcInfo], count: int, percent: float, order: str, rng: random.Random
) -> list[ProcInfo]:
    """count of the matches, or percent of them (rounded up, at least one), or
    all; by order: newest or oldest start time first, or at random."""
    if count:
        n = count
    elif percent:
        n = max(1, math.ceil(len(matches) * percent / 100))
    else:
        return list(matches)
    if order == "newest":
        ranked = sorted(matches, key=lambda p: (p.start_time, p.pid), reverse=True)
    elif order == "oldest":
        ranked = sorted(matches, key=lambda p: (p.start_time, p.pid))
    else:
        ranked = rng.sample(list(matches), len(matches))
    return ranked[:n]
