"""Pause: freeze a cgroup (a container's, a service's, a pid's) with the
cgroup freezer until the fault ends, as `docker pause` does.

The cgroup is journaled before it is frozen, so a restarted agent or the
offline sweep thaws it. Refused before anything happens: the root cgroup, a
cgroup that holds the agent or its ancestors (so also the agent's own and
every ancestor of it), pid 1, a local lease holder or caller, a Brownout
worker, or (unless allow_denylisted) a process on the denylist; and a cgroup
that is frozen already, whose thaw at the end would undo someone else's
freeze.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from agent.core.errors import ApplyError, FailedPrecondition, InvalidArgument, TargetGone
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.faults import targets
from agent.faults.process import matching
from agent.faults.process.guard import request_guard
from agent.kernel import cgroups, freezer
from agent.kernel.freezer import Freezer
from agent.kernel.procs import table
from brownout.v1 import agent_pb2 as pb


class PauseInjector:
    kind = "pause"
    survives_reboot = False

    def __init__(self, ctx: InjectorContext) -> None:
        self._ctx = ctx

    def probe(self) -> Capability:
        why = freezer.available()
        return Capability(not why, why)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> Freezer:
        assert isinstance(spec, pb.PauseSpec)
        located = targets.locate(target, self.kind)
        if located is None:
            raise InvalidArgument(
                "target",
                "a pause freezes a cgroup: give target.cgroup, target.pid or target.container",
            )
        field, placement = located
        f = freezer.of(placement)
        if f is None:
            raise InvalidArgument(
                field, f"{cgroups.describe(placement)} is in no freezer hierarchy on this node"
            )
        if any(cg.is_root for cg in placement if cg.dir == f.dir):
            raise InvalidArgument(field, "is the root cgroup: it holds every process on the node")
        state = freezer.state(f)
        if state != "THAWED":
            raise FailedPrecondition(
                f"{f.dir} is {state.lower()} already: a pause would thaw it at its end,"
                " undoing whoever froze it"
            )
        members = list(table.scan(table.cgroup_pids(f.dir)))
        guard = request_guard(self._ctx, request, spec.allow_denylisted)
        matching.refuse_unsafe(members, guard, f"refused, nothing was frozen: {f.dir} holds")
        return f

    def apply(self, fault_id: str, plan: Freezer, checkpoint: Checkpoint) -> Applied:
        checkpoint(plan.record())  # before the freeze: whoever reverts thaws it
        try:
            took = freezer.freeze(plan)
        except TimeoutError as exc:
            freezer.thaw(plan)
            raise ApplyError(f"{exc}: a task in it would not stop; thawed again") from None
        except FileNotFoundError:
            raise TargetGone(f"{plan.dir} was removed") from None
        members = table.cgroup_pids(plan.dir)
        summary = {
            "cgroup": str(plan.dir),
            "cgroup_version": str(plan.version),
            "state": freezer.state(plan),
            "processes": str(len(members)),
            "seconds_to_freeze": f"{took:.4f}",
        }
        return Applied(plan.record(), summary)

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        if not undo or "dir" not in undo:
            return  # the crash came before the journal named a cgroup: nothing frozen
        f = Freezer(Path(str(undo["dir"])), int(undo["version"]))
        try:
            freezer.thaw(f)
        except FileNotFoundError:
            raise TargetGone(f"{f.dir} is gone, and its freeze with it") from None

    def sweep(self) -> list[str]:
        return []  # a freeze carries no marker: the journal holds it, and recovery thaws it
