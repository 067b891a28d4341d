"""Process layer: the only code that starts, finds or kills processes.

ids: how a process is known (pid + start time) and marked; spawn: the
spawner and its fork server; exits: the pidfd watch that sees workers die;
marked: finding and killing what this agent started, by its markers.
"""

from agent.kernel.procs.exits import Exit
from agent.kernel.procs.ids import (
    FAULT_FLAG,
    INSTANCE_FLAG,
    PARENT_FLAG,
    MarkedProc,
    ProcRef,
    alive,
    get_oom_score_adj,
    marker_args,
    set_oom_score_adj,
    start_time,
)
from agent.kernel.procs.marked import (
    find_marked,
    find_zygotes,
    kill,
    kill_fault_workers,
    sweep_workers,
    sweep_zygotes,
)
from agent.kernel.procs.spawn import Spawner, SpawnError, worker_argv

__all__ = [
    "FAULT_FLAG",
    "INSTANCE_FLAG",
    "PARENT_FLAG",
    "Exit",
    "MarkedProc",
    "ProcRef",
    "SpawnError",
    "Spawner",
    "alive",
    "find_marked",
    "find_zygotes",
    "get_oom_score_adj",
    "kill",
    "kill_fault_workers",
    "marker_args",
    "set_oom_score_adj",
    "start_time",
    "sweep_workers",
    "sweep_zygotes",
    "worker_argv",
]
