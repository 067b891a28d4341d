"""Disk fill: one file in <mount>/.brownout/ that takes the asked-for space.

The path is resolved (symlinks too) to its mount. The amount is a percent
used (as df shows it: used / (used + available)), bytes to write, or bytes
to leave free; it is recomputed from statvfs when applied, and corrected once
after the allocation so the filesystem lands on the target. The disk reserve
(the larger of --disk-reserve and 1 % of the filesystem) is never consumed
unless allow_full; a request that would is capped (the reply says so) or,
when nothing fits, refused. On the filesystem holding the agent's journal a
small headroom is always kept, so the agent can still record the fault.

Two fills on one filesystem are refused: the second's target would change
meaning whenever the first ends, which is not what anyone asked for.
Revert only unlinks, which needs no free space.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from google.protobuf.message import Message

from agent.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.core.limits import Limits
from agent.core.validation import number_in_range
from agent.kernel import fs
from brownout.v1 import agent_pb2 as pb

KIND_SUFFIX = "fill"
JOURNAL_HEADROOM = 1024 * 1024
MIB = 1024 * 1024


def reserve_bytes(total: int, limits: Limits) -> int:
    return max(limits.disk_reserve_bytes, int(total * limits.disk_reserve_percent / 100))


@dataclass(frozen=True)
class Amount:
    field: str  # the DiskSpec field that set it
    value: float


@dataclass(frozen=True)
class FillSize:
    bytes: int
    requested: int
    capped: bool


def fill_size(amount: Amount, u: fs.Usage, keep: int, where: str) -> FillSize:
    """Bytes to allocate on a filesystem with usage `u` so that it reaches the
    target, keeping `keep` bytes available. Raises naming the field."""
    field = f"disk.{amount.field}"
    if amount.field == "fill_percent":
        target_used = int(amount.value / 100 * (u.used + u.avail))
        requested = target_used - u.used
        if requested <= 0:
            raise InvalidArgument(
                field,
                f"{where} is already {u.used_percent:.2f}% used; ask for more than that",
            )
    elif amount.field == "write_bytes":
        requested = int(amount.value)
    else:
        requested = u.avail - int(amount.value)
        if requested <= 0:
            raise InvalidArgument(
                field,
                f"{where} has only {u.avail} bytes available, not more than the"
                f" {int(amount.value)} to leave free",
            )
    room = u.avail - keep
    room -= room % u.block
    if room <= 0:
        raise ResourceExhausted(
            f"{field}: refused: {where} has {u.avail // MIB} MiB available and"
            f" {keep // MIB} MiB of it is reserved (--disk-reserve, or allow_full to use it)"
        )
    if requested > room:
        return FillSize(room, requested, True)
    return FillSize(requested, requested, False)


def correction(amount: Amount, u: fs.Usage, keep: int, allocated: int) -> int:
    """Bytes to add (or, negative, give back) to a fill of `allocated` bytes so
    usage `u` reaches the target, never below `keep` available; whole blocks."""
    if amount.field == "fill_percent":
        delta = int(amount.value / 100 * (u.used + u.avail)) - u.used
    elif amount.field == "leave_free_bytes":
        delta = u.avail - int(amount.value)
    else:
        return 0
    delta = max(min(delta, u.avail - keep), -allocated)
    return int(delta / u.block) * u.block  # towards zero


@dataclass(frozen=True)
class DiskPlan:
    path: Path  # as resolved
    mount: Path
    dev: int
    amount: Amount
    allow_full: bool
    keep: int  # bytes left available at least
    reserve: int


def resolve_dir(field: str, text: str) -> Path:
    """An absolute path to an existing directory, symlinks resolved."""
    if not text:
        raise InvalidArgument(field, "is required: an absolute path to an existing directory")
    try:
        return fs.real_dir(text)
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None


def mount_point(field: str, path: Path) -> Path:
    """The mount point of a writable filesystem holding `path`."""
    try:
        entry = fs.mount_of(path)
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None
    reason = fs.unwritable_reason(entry)
    if reason:
        raise InvalidArgument(field, f"{path}: {reason}")
    return entry.mount_point


def _conflict(other: str, mount: Path) -> FailedPrecondition:
    return FailedPrecondition(
        f"disk fill {other} is already active on the filesystem of {mount};"
        " fills do not compose: revert it first"
    )


class DiskUndo(TypedDict):
    files: list[str]
    dev: int


class DiskInjector:
    kind = "disk"
    survives_reboot = True

    def __init__(self, ctx: InjectorContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._fills: dict[int, str] = {}  # st_dev -> fault id: one fill per filesystem

    def probe(self) -> Capability:
        try:
            fs.mount_of(Path("/"))
        except (OSError, ValueError) as exc:
            return Capability(False, f"/proc/self/mountinfo unusable: {exc}")
        return Capability(True)

    def _keep(self, mount: Path, total: int, allow_full: bool) -> tuple[int, int]:
        """(bytes to keep available, the reserve) on this filesystem."""
        reserve = reserve_bytes(total, self._ctx.limits)
        headroom = JOURNAL_HEADROOM if fs.same_filesystem(mount, self._ctx.markers.state_dir) else 0
        return (headroom if allow_full else max(reserve, headroom)), reserve

    def _busy(self, dev: int, mount: Path) -> None:
        with self._lock:
            other = self._fills.get(dev)
        if other is not None:
            raise _conflict(other, mount)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> DiskPlan:
        assert isinstance(spec, pb.DiskSpec)
        if target.WhichOneof("selector") is not None:
            raise InvalidArgument(
                "target", "disk fills take a path (disk.path), not a cgroup or process target"
            )
        path = resolve_dir("disk.path", spec.path)
        which = spec.WhichOneof("amount")
        if which == "fill_percent":
            number_in_range("disk.fill_percent", spec.fill_percent, 0, 100, "%")
            if spec.fill_percent == 0:
                raise InvalidArgument("disk.fill_percent", "must be > 0 and at most 100%, got 0%")
            amount = Amount(which, spec.fill_percent)
        elif which == "write_bytes":
            if spec.write_bytes <= 0:
                raise InvalidArgument("disk.write_bytes", f"must be > 0, got {spec.write_bytes}")
            amount = Amount(which, spec.write_bytes)
        elif which == "leave_free_bytes":
            if spec.leave_free_bytes < 0:
                raise InvalidArgument(
                    "disk.leave_free_bytes", f"must be >= 0, got {spec.leave_free_bytes}"
                )
            amount = Amount(which, spec.leave_free_bytes)
        else:
            raise InvalidArgument(
                "disk.amount",
                "set one of disk.fill_percent, disk.write_bytes, disk.leave_free_bytes",
            )
        mount = mount_point("disk.path", path)
        dev = fs.device_of(mount)
        self._busy(dev, mount)
        u = fs.usage(mount)
        keep, reserve = self._keep(mount, u.total, spec.allow_full)
        fill_size(amount, u, keep, str(mount))  # refuse now what cannot be done
        return DiskPlan(path, mount, dev, amount, spec.allow_full, keep, reserve)

    def apply(self, fault_id: str, plan: DiskPlan, checkpoint: Checkpoint) -> Applied:
        # Check and claim in one step: two fills may both have passed validate.
        with self._lock:
            other = self._fills.setdefault(plan.dev, fault_id)
        if other != fault_id:
            raise _conflict(other, plan.mount)
        name = fs.file_name(fault_id, self._ctx.markers.instance, KIND_SUFFIX)
        path = fs.brownout_dir(plan.mount) / name
        # Journaled before the file exists: a crash from here on is reverted.
        undo: DiskUndo = {"files": [str(path)], "dev": plan.dev}
        checkpoint(undo)
        before = fs.usage(plan.mount)
        size = fill_size(plan.amount, before, plan.keep, str(plan.mount))
        with fs.FillFile(path) as fill:
            method = fill.grow(0, size.bytes)
            allocated = size.bytes
            if plan.amount.field != "write_bytes":
                allocated += self._correct(fill, plan, allocated)
        after = fs.usage(plan.mount)
        return Applied(
            undo,
            {
                "path": str(plan.path),
                "mount": str(plan.mount),
                "file": str(path),
                "method": method,
                "bytes": str(allocated),
                "requested_bytes": str(size.requested),
                "capped": "true" if size.capped else "false",
                "reserve_bytes": str(plan.reserve),
                "allow_full": "true" if plan.allow_full else "false",
                "used_percent_before": f"{before.used_percent:.2f}",
                "used_percent": f"{after.used_percent:.2f}",
                "available_bytes": str(after.avail),
            },
        )

    def _correct(self, fill: fs.FillFile, plan: DiskPlan, allocated: int) -> int:
        """One pass towards the target after the first allocation, for what
        metadata (or others) took meanwhile. Returns the change in bytes."""
        delta = correction(plan.amount, fs.usage(plan.mount), plan.keep, allocated)
        if delta > 0:
            fill.grow(allocated, delta)
        elif delta < 0:
            fill.truncate(allocated + delta)
        return delta

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        with self._lock:
            for dev in [d for d, f in self._fills.items() if f == fault_id]:
                del self._fills[dev]
        files = [Path(p) for p in (undo or {}).get("files", [])]
        fs.remove(files)

    def sweep(self) -> list[str]:
        mine = [p for p, kind in fs.marked_files(self._ctx.markers.instance) if kind == KIND_SUFFIX]
        swept = fs.remove(mine)
        return [f"fill file {p}" for p in swept]
