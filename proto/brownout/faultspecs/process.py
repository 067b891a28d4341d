"""Process faults: which processes (where, and by comm, command line or
user), how many of them, and what happens to them (kill or stop); and pause,
which freezes a whole cgroup."""

from __future__ import annotations

from brownout.faultspecs import values as v
from brownout.faultspecs.options import Kind, Option, Values
from brownout.faultspecs.resource import process_target
from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb

ACTIONS = {"kill": pb.PROCESS_ACTION_KILL, "stop": pb.PROCESS_ACTION_STOP}
ORDERS = {
    "random": pb.PROCESS_ORDER_RANDOM,
    "newest": pb.PROCESS_ORDER_NEWEST,
    "oldest": pb.PROCESS_ORDER_OLDEST,
}


def _process(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.ProcessSpec(
        comm=values["comm"] or "",
        cmdline=values["cmdline"] or "",
        user=values["user"] or "",
        count=values["count"] or 0,
        percent=values["percent"] or 0.0,
        order=ORDERS[values["order"]],
        action=ACTIONS[values["action"]],
        signal=values["signal"] or 0,
        children=values["children"],
        allow_denylisted=values["allow_denylisted"],
        allow_many=values["allow_many"],
    )
    if values["interval"]:
        spec.interval.CopyFrom(to_duration(values["interval"]))
    return pb.FaultSpec(process=spec), process_target(values)


PROCESS = Kind(
    "process",
    "kill processes (once, or every interval) or stop them until the fault ends",
    (
        Option("action", choices=tuple(ACTIONS), required=True,
               help="kill: send a signal; stop: SIGSTOP, continued when the fault ends"),
        Option("comm", v.text, "regular expression the whole process name (comm) matches"),
        Option("cmdline", v.text, "regular expression searched for in the command line"),
        Option("user", v.text, "effective user, a name or a uid"),
        Option("count", v.int_in(1, 100_000), "this many of the matches", group="amount"),
        Option("percent", v.positive_percent, "this share of the matches (rounded up)",
               group="amount"),
        Option("order", choices=tuple(ORDERS), default="random",
               help="which matches when fewer than all (default random)"),
        Option("signal", v.signal_number, "for kill: a name or number (default KILL)",
               metavar="SIGNAL"),
        Option("interval", v.positive_duration,
               "for kill: again every interval for the duration, matching afresh"),
        Option("children", None, "also every descendant of each chosen process"),
        Option("allow_denylisted", None,
               "allow processes on the agent's denylist (sshd, journald, kubelet, ...)"),
        Option("allow_many", None, "allow more matches than the agent's cap (default 50)"),
        Option("pid", v.pid, "this process (the match, if given, must hold for it too)",
               group="target"),
        Option("cgroup", v.cgroup, "the processes of this cgroup and of the cgroups below it",
               group="target"),
        Option("container", v.container_id, "the processes of this container", group="target"),
    ),
    _process,
)  # fmt: skip


def _pause(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.PauseSpec(allow_denylisted=values["allow_denylisted"])
    return pb.FaultSpec(pause=spec), process_target(values)


PAUSE = Kind(
    "pause",
    "freeze a cgroup (a container's, a service's, a process's) until the fault ends",
    (
        Option("cgroup", v.cgroup, "this cgroup and every cgroup below it", group="target"),
        Option("pid", v.pid, "the cgroup of this process", group="target"),
        Option("container", v.container_id, "this container's cgroup", group="target"),
        Option("allow_denylisted", None,
               "allow a cgroup holding a process on the agent's denylist"),
    ),
    _pause,
    frozenset({"target"}),
)  # fmt: skip

KINDS = (PROCESS, PAUSE)
