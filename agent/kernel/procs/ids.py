"""How the agent knows a process: pid plus kernel start time (so a recycled pid
is never touched), and the markers on the command lines of what it starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.workers import zygote

INSTANCE_FLAG = "--brownout-instance="
FAULT_FLAG = "--brownout-fault="
ZYGOTE_FLAG = zygote.ZYGOTE_FLAG.encode()
PARENT_FLAG = "--parent-pid"


@dataclass(frozen=True)
class ProcRef:
    pid: int
    start_time: int


@dataclass(frozen=True)
class MarkedProc:
    pid: int
    start_time: int
    fault_id: str


def start_time(pid: int) -> int | None:
    """Kernel start time of pid in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(ref: ProcRef) -> bool:
    return start_time(ref.pid) == ref.start_time


def marker_args(instance: str, fault_id: str) -> list[str]:
    return [f"{INSTANCE_FLAG}{instance}", f"{FAULT_FLAG}{fault_id}"]


def fault_of(argv: list[str]) -> str:
    """The fault id a worker's markers name ("" for none)."""
    return next((a[len(FAULT_FLAG) :] for a in argv if a.startswith(FAULT_FLAG)), "")


def set_oom_score_adj(pid: int, value: int) -> None:
    Path(f"/proc/{pid}/oom_score_adj").write_text(f"{value}\n")


def get_oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())
