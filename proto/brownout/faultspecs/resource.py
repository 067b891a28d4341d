"""CPU, memory, disk and IO: the options of each kind and its spec."""

from __future__ import annotations

from brownout.faultspecs import values as v
from brownout.faultspecs.options import Kind, Option, Values
from brownout.v1 import agent_pb2 as pb

# A resource fault runs on the host, or inside a cgroup given by path or by a pid in it.
PROCESS_TARGET = (
    Option("cgroup", v.cgroup, "run inside this cgroup (path under the cgroup mount)",
           group="target"),
    Option("pid", v.pid, "target the cgroup of this process", group="target"),
    Option("container", v.container_id, "target this container's cgroup (an id or a unique"
           " prefix of 12+)", group="target"),
)  # fmt: skip


def process_target(values: Values) -> pb.Target:
    if values.get("container"):
        return pb.Target(container=values["container"])
    if values["cgroup"]:
        return pb.Target(cgroup=values["cgroup"])
    if values["pid"]:
        return pb.Target(pid=values["pid"])
    return pb.Target()


def _cpu(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.CpuSpec(
        cores=values["cores"] or 0,
        core_list=values["core_list"] or [],
        load_percent=values["load"],
    )
    return pb.FaultSpec(cpu=spec), process_target(values)


CPU = Kind(
    "cpu",
    "burn CPU at a duty cycle on some cores",
    (
        Option("cores", v.int_in(1, 4096), "number of cores (the agent picks them)",
               group="cores"),
        Option("core_list", v.core_list, "explicit cores, e.g. 0,2-3", group="cores"),
        Option("load", v.load_percent, "percent per core, 1-100; with a target that has a CPU"
               " quota, of that quota", required=True),
        *PROCESS_TARGET,
    ),
    _cpu,
    frozenset({"cores"}),
)  # fmt: skip


def _memory(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.MemorySpec(rate_mib_per_second=values["rate"])
    if values["size"] is not None:
        spec.bytes = values["size"]
    else:
        spec.percent = values["percent"]
    return pb.FaultSpec(memory=spec), process_target(values)


MEMORY = Kind(
    "memory",
    "leak resident memory, at a rate, up to a size",
    (
        Option("size", v.positive_size, "bytes to leak, e.g. 1GiB", group="size"),
        Option("percent", v.positive_percent, "percent of total memory", group="size"),
        Option("rate", v.memory_rate, "ramp, e.g. 256MiB/s (default 0: all at once)",
               default=0.0),
        *PROCESS_TARGET,
    ),
    _memory,
    frozenset({"size"}),
)  # fmt: skip


def _disk(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.DiskSpec(path=values["path"], allow_full=values["allow_full"])
    if values["fill"] is not None:
        spec.fill_percent = values["fill"]
    elif values["write"] is not None:
        spec.write_bytes = values["write"]
    else:
        spec.leave_free_bytes = values["leave"]
    return pb.FaultSpec(disk=spec), pb.Target()


DISK = Kind(
    "disk",
    "fill the filesystem holding a directory",
    (
        Option("path", v.text, "absolute path to a directory on the filesystem", required=True),
        Option("fill", v.positive_percent, "target percent used, as df shows it", group="amount"),
        Option("write", v.positive_size, "bytes to write, e.g. 2GiB", group="amount"),
        Option("leave", v.size, "bytes to leave free, e.g. 500MiB", group="amount"),
        Option("allow_full", None, "may consume the agent's disk reserve"),
    ),
    _disk,
    frozenset({"amount"}),
)

IO_MODES = {"read": pb.IO_MODE_READ, "write": pb.IO_MODE_WRITE, "mixed": pb.IO_MODE_MIXED}


def _io(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.IoSpec(
        path=values["path"],
        workers=values["workers"],
        mode=IO_MODES[values["mode"]],
        block_size_bytes=values["block_size"],
        direct=values["direct"],
        bytes_per_worker=values["bytes_per_worker"],
    )
    return pb.FaultSpec(io=spec), process_target(values)


IO = Kind(
    "io",
    "block IO from workers on the filesystem holding a directory",
    (
        Option("path", v.text, "absolute path to a directory on the filesystem", required=True),
        Option("workers", v.int_in(1, 64), "worker processes (default 1)", default=1),
        Option("mode", choices=tuple(sorted(IO_MODES)), required=True),
        Option("block_size", v.positive_size, "default 4KiB", default=4096),
        Option("bytes_per_worker", v.positive_size, "size of each worker's file (default 64MiB)",
               default=0),
        Option("direct", None, "O_DIRECT: bypass the page cache"),
        *PROCESS_TARGET,
    ),
    _io,
)  # fmt: skip

KINDS = (CPU, MEMORY, DISK, IO)
