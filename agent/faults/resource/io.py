"""IO stress: N workers, each doing block IO at random offsets of its own file.

Files live in <mount>/.brownout/ like disk fills (named `<fault>.<agent>.io<N>`),
are created by the agent before the workers start (so they are journaled
before they exist), and are deleted on revert after the workers are killed.
Without O_DIRECT the workers sync and drop their file's page cache after every
pass, so the IO reaches the device rather than staying in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from google.protobuf.message import Message

from agent.core.errors import InvalidArgument, ResourceExhausted
from agent.core.injector import Applied, Capability, Checkpoint, RequestContext
from agent.faults import targets
from agent.faults.resource.disk import mount_point, reserve_bytes, resolve_dir
from agent.faults.resource.workers import WorkerInjector, WorkerRecord
from agent.kernel import cgroups, fs
from brownout.v1 import agent_pb2 as pb

KIND_SUFFIX = "io"
MAX_WORKERS = 64
MIN_BLOCK, MAX_BLOCK = 512, 64 * 1024 * 1024
DEFAULT_BLOCK = 4096
DEFAULT_BYTES_PER_WORKER = 64 * 1024 * 1024
DIRECT_ALIGN = 512
MIB = 1024 * 1024
MODES: dict[int, str] = {
    pb.IO_MODE_READ: "read",
    pb.IO_MODE_WRITE: "write",
    pb.IO_MODE_MIXED: "mixed",
}


@dataclass(frozen=True)
class IoPlan:
    path: Path
    mount: Path
    workers: int
    mode: str
    block_size: int
    direct: bool
    bytes_per_worker: int
    placement: cgroups.Placement | None


def check_sizes(workers: int, block: int, per_worker: int, direct: bool) -> tuple[int, int]:
    """(block size, bytes per worker) with defaults applied; raises naming the field."""
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidArgument("io.workers", f"must be between 1 and {MAX_WORKERS}, got {workers}")
    block = block or DEFAULT_BLOCK
    if not MIN_BLOCK <= block <= MAX_BLOCK:
        raise InvalidArgument(
            "io.block_size_bytes",
            f"must be between {MIN_BLOCK} and {MAX_BLOCK} bytes (0: {DEFAULT_BLOCK}), got {block}",
        )
    if direct and block % DIRECT_ALIGN:
        raise InvalidArgument(
            "io.block_size_bytes",
            f"must be a multiple of {DIRECT_ALIGN} with io.direct, got {block}",
        )
    per_worker = per_worker or DEFAULT_BYTES_PER_WORKER
    if per_worker < block or per_worker % block:
        raise InvalidArgument(
            "io.bytes_per_worker",
            f"must be a positive multiple of the block size {block}"
            f" (0: {DEFAULT_BYTES_PER_WORKER}), got {per_worker}",
        )
    return block, per_worker


class IoUndo(TypedDict):
    files: list[str]
    workers: list[WorkerRecord]


class IoInjector(WorkerInjector):
    kind = "io"
    survives_reboot = True
    module = "agent.workers.io_stress"
    what = "io worker"

    def probe(self) -> Capability:
        missing = fs.direct_io_missing()
        return Capability(False, missing) if missing else Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> IoPlan:
        assert isinstance(spec, pb.IoSpec)
        path = resolve_dir("io.path", spec.path)
        mode = MODES.get(spec.mode)
        if mode is None:
            raise InvalidArgument("io.mode", f"must be read, write or mixed, got {spec.mode}")
        block, per_worker = check_sizes(
            spec.workers, spec.block_size_bytes, spec.bytes_per_worker, spec.direct
        )
        placement = targets.placement(target, self.kind)
        mount = mount_point("io.path", path)
        u = fs.usage(mount)
        reserve = reserve_bytes(u.total, self._ctx.limits)
        need = spec.workers * per_worker
        if need > u.avail - reserve:
            raise ResourceExhausted(
                f"io.bytes_per_worker: refused: {spec.workers} files of {per_worker} bytes need"
                f" {need // MIB} MiB but {mount} has {u.avail // MIB} MiB available and a"
                f" disk reserve of {reserve // MIB} MiB"
            )
        return IoPlan(path, mount, spec.workers, mode, block, spec.direct, per_worker, placement)

    def apply(self, fault_id: str, plan: IoPlan, checkpoint: Checkpoint) -> Applied:
        files = [
            fs.brownout_dir(plan.mount)
            / fs.file_name(fault_id, self._ctx.markers.instance, f"{KIND_SUFFIX}{i}")
            for i in range(plan.workers)
        ]
        workers: list[WorkerRecord] = []
        undo: IoUndo = {"files": [str(f) for f in files], "workers": workers}
        checkpoint(undo)
        placement = plan.placement

        def place(pid: int) -> None:
            if placement:
                cgroups.attach(pid, placement)

        for f in files:
            fs.create_empty(f)
            args = ["--file", str(f), "--mode", plan.mode, "--block-size", str(plan.block_size)]
            args += ["--bytes", str(plan.bytes_per_worker), *(["--direct"] if plan.direct else [])]
            ref = self.spawn(fault_id, args, before_go=place)
            workers.append({"pid": ref.pid, "start_time": ref.start_time})
            checkpoint(undo)
        summary = {
            "path": str(plan.path),
            "mount": str(plan.mount),
            "mode": plan.mode,
            "workers": str(plan.workers),
            "block_size_bytes": str(plan.block_size),
            "bytes_per_worker": str(plan.bytes_per_worker),
            "direct": "true" if plan.direct else "false",
            "worker_pids": ",".join(str(w["pid"]) for w in workers),
            "files": ",".join(str(f) for f in files),
        }
        if placement:
            summary["cgroup"] = cgroups.describe(placement)
        return Applied(undo, summary)

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        self.kill_workers(fault_id, undo)
        # Workers first: a file is only deleted once nothing writes to it.
        fs.remove([Path(p) for p in (undo or {}).get("files", [])])

    def sweep(self) -> list[str]:
        swept = super().sweep()
        leftovers = [
            p
            for p, kind in fs.marked_files(self._ctx.markers.instance)
            if kind.startswith(KIND_SUFFIX) and kind[len(KIND_SUFFIX) :].isdigit()
        ]
        swept += [f"io file {p}" for p in fs.remove(leftovers)]
        return swept
