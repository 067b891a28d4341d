"""Resolution of a request's Target: into the cgroups a resource fault's
workers join, or the network namespace a network fault lands in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from agent.core.errors import InvalidArgument
from agent.core.injector import WatchedTarget
from agent.kernel import cgroups, containers
from agent.kernel.net import netns
from agent.kernel.net.netns import NetnsRef
from brownout.v1 import agent_pb2 as pb


def container(target: pb.Target) -> containers.Container:
    """The running container target.container names; InvalidArgument if none."""
    try:
        return containers.by_id(target.container)
    except ValueError as exc:
        raise InvalidArgument("target.container", str(exc)) from None


def watched(target: pb.Target) -> WatchedTarget | None:
    """The process whose end ends a fault on this target: a container's init."""
    if target.WhichOneof("selector") != "container":
        return None
    c = container(target)
    return WatchedTarget(c.label, c.pid, c.start_time)


def locate(target: pb.Target, kind: str) -> tuple[str, cgroups.Placement] | None:
    """The target's cgroups and the field that named them, None for the host."""
    which = target.WhichOneof("selector")
    if which is None:
        return None
    if which == "container":
        field = "target.container"
        try:
            found = cgroups.of_pid(container(target).pid)
        except ProcessLookupError:
            raise InvalidArgument(field, f"container {target.container} just exited") from None
    elif which == "pid":
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
            f"target.{which}",
            f"{kind} faults target a cgroup, a pid or a container, not a network namespace",
        )
    if not found:
        raise InvalidArgument(field, "is in no mounted cgroup hierarchy")
    return field, found


def placement(
    target: pb.Target, kind: str, controller: str | None = None
) -> cgroups.Placement | None:
    """The cgroups a fault's workers join, None for the host. `controller`, if
    given, must govern the target (e.g. "memory" for a leak charged to it)."""
    located = locate(target, kind)
    if located is None:
        return None
    field, found = located
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


def network(target: pb.Target) -> NetnsRef:
    """The namespace a network fault lands in; InvalidArgument if there is none."""
    selector = target.WhichOneof("selector")
    if selector is None:
        return netns.own()
    if selector == "cgroup":
        raise InvalidArgument(
            "target.cgroup",
            "network faults target a network namespace: use pid, container, netns_path"
            " or netns_name",
        )
    if selector == "container":
        c = container(target)
        ref = _found("target.container", lambda: netns.of_pid(c.pid))
        return replace(ref, label=f"container {c.id}")
    if selector == "pid":
        if target.pid <= 0:
            raise InvalidArgument("target.pid", f"must be a positive pid, got {target.pid}")
        return _found("target.pid", lambda: netns.of_pid(target.pid))
    if selector == "netns_name":
        name = target.netns_name
        if not netns.NAME.match(name) or name in (".", ".."):
            raise InvalidArgument(
                "target.netns_name", f"{name!r} is not a namespace name ([A-Za-z0-9_.-], 1-64)"
            )
        return _found("target.netns_name", lambda: netns.named(name))
    path = target.netns_path
    if not path.startswith("/"):
        raise InvalidArgument("target.netns_path", f"must be an absolute path, got {path!r}")
    return _found("target.netns_path", lambda: netns.at_path(path, path))


def _found(field: str, find: Callable[[], NetnsRef]) -> NetnsRef:
    try:
        return find()
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None
