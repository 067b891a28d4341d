"""The base of the injectors whose effect is worker processes: CPU hogs,
memory leaks and IO stress.

Workers are started by the agent's spawner (kernel.procs) from argv lists
that carry this agent's markers and the fault's id. Revert kills the ones
the undo record names and any a crash left before its checkpoint (found by
marker); sweep kills every worker of the module that bears this agent's
marker. A worker that dies on its own is reported by the spawner's exit
watch (see core.reverts.worker_died).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypedDict

from agent.core.injector import InjectorContext
from agent.kernel import procs


class WorkerRecord(TypedDict):
    """A worker in an undo record: enough to kill exactly it, never a recycled pid."""

    pid: int
    start_time: int


class WorkerInjector:
    module: ClassVar[str]  # the worker module, e.g. "agent.workers.cpu_burn"
    what: ClassVar[str]  # how logs and sweeps name one, e.g. "cpu worker"

    def __init__(self, ctx: InjectorContext, spawner: procs.Spawner) -> None:
        self._ctx = ctx
        self._spawner = spawner

    def spawn(
        self,
        fault_id: str,
        args: list[str],
        before_go: Callable[[int], None] | None = None,
        on_running: Callable[[str], None] | None = None,
    ) -> procs.ProcRef:
        """Start one worker of this fault and wait until it runs (see Spawner.spawn)."""
        argv = procs.worker_argv(self.module, args, self._ctx.markers.instance, fault_id)
        return self._spawner.spawn(argv, before_go=before_go, on_running=on_running)

    def kill_workers(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        """Kill the fault's workers; idempotent."""
        procs.kill_fault_workers(
            self._ctx.markers.instance,
            fault_id,
            self.module,
            list((undo or {}).get("workers", [])),
            self._spawner,
            f"{self.what}s",
        )

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        self.kill_workers(fault_id, undo)

    def sweep(self) -> list[str]:
        return procs.sweep_workers(
            self._ctx.markers.instance, self.module, self._spawner, self.what
        )
