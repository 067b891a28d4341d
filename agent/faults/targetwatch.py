"""The agent's TargetWatch: a fault on a container ends when the container does.

A container stands for its init process (pid and start time, from
targets.watched); a pidfd per watched process (kernel.procs' ExitWatch)
says at once when it exits, and the manager then ends the fault as
target_gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from agent.core.injector import WatchedTarget
from agent.faults import targets
from agent.kernel.procs.exits import Exit, ExitWatch
from agent.kernel.procs.ids import start_time
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)


class TargetWatcher:
    def __init__(self) -> None:
        # Set by the daemon once the manager exists: (fault id, why).
        self.on_gone: Callable[[str, str], None] = lambda _fault, _why: None
        self._lock = threading.Lock()
        self._watched: dict[str, WatchedTarget] = {}
        self._exits = ExitWatch(self._exited, start_time)

    def resolve(self, target: object) -> WatchedTarget | None:
        assert isinstance(target, pb.Target)
        return targets.watched(target)

    def watch(self, fault_id: str, target: WatchedTarget) -> None:
        with self._lock:
            self._watched[fault_id] = target
        self._exits.watch(target.pid, target.start_time, fault_id)

    def unwatch(self, fault_id: str) -> None:
        with self._lock:
            target = self._watched.pop(fault_id, None)
            shared = target is not None and any(
                (w.pid, w.start_time) == (target.pid, target.start_time)
                for w in self._watched.values()
            )
        # Another fault on the same container keeps the process watched; this
        # fault's own report, if it comes, finds the fault ended and is ignored.
        if target is not None and not shared:
            self._exits.expect(target.pid, target.start_time)

    def _exited(self, exit: Exit) -> None:
        with self._lock:
            target = self._watched.get(exit.tag)
        if target is None:
            return
        why = f"{target.label} exited: the fault's target is gone"
        log.info("target exited", fault_id=exit.tag, target=target.label)
        self.on_gone(exit.tag, why)

    def close(self) -> None:
        self._exits.close()
