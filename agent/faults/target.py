"""Resolution of a request's Target into the cgroups a resource fault's workers join."""

from __future__ import annotations

from agent import cgroups
from agent.errors import InvalidArgument
from brownout.v1 import agent_pb2 as pb


def placement(
    target: pb.Target, kind: str, controller: str | None = None
) -> cgroups.Placement | None:
    """The target's cgroups, None for the host. `controller`, if given, must
    govern the target (e.g. "memory" for a leak charged to it)."""
    which = target.WhichOneof("selector")
    if which is None:
        return None
    if which == "pid":
        field = "target.pid"
        if target.pid <= 0:
            raise InvalidArgument(field, f"must be a positive process id, got {target.pid}")
        try:
            found = cgroups.of_pid(target.pid)
        except ProcessLookupError:
            raise InvalidArgument(field, f"no process {target.pid} on this node") from None
    elif which == "cgroup":
        field = "target.cgroup"
        if not target.cgroup.strip():
            raise InvalidArgument(field, "must name a cgroup, e.g. /system.slice/app.service")
        try:
            found = cgroups.find(target.cgroup)
        except ValueError as exc:
            raise InvalidArgument(field, str(exc)) from None
    else:
        raise InvalidArgument(
            f"target.{which}", f"{kind} faults target a cgroup or a pid, not a network namespace"
        )
    if not found:
        raise InvalidArgument(field, "is in no mounted cgroup hierarchy")
    problem = cgroups.attach_problem(found)
    if problem:
        raise InvalidArgument(field, problem)
    if controller and not cgroups.with_controller(found, controller):
        raise InvalidArgument(
            field,
            f"{cgroups.describe(found)} is not governed by the {controller} controller,"
            f" so a {kind} fault could not be charged to it",
        )
    return found
