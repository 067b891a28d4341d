"""Shared pieces of the reliability suite: scale, figures and residue checks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.host.nethosts import NetBed, net_bed, nsrun
from tests.host.scratch import CGROUP_ROOT, cgroup, loopfs, tmpfs

# `make soak` sets BROWNOUT_SOAK=1: every test runs at its larger scale.
SOAK = os.environ.get("BROWNOUT_SOAK", "") not in ("", "0")
MIB = 1024 * 1024
LIVE = [pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE, pb.FAULT_STATE_REVERTING]

FIGURES: dict[str, dict[str, Any]] = {}


def scale(env: str, ci: int, soak: int) -> int:
    """An explicit env var wins, then the soak or CI default."""
    return int(os.environ.get(env) or (soak if SOAK else ci))


def figure(test: str, **values: Any) -> None:
    FIGURES.setdefault(test, {}).update(values)


def bump(test: str, key: str, by: int = 1) -> None:
    FIGURES.setdefault(test, {})
    FIGURES[test][key] = FIGURES[test].get(key, 0) + by


@dataclass
class Rig:
    """Where faults of every kind land: a scratch tmpfs (disk), a scratch ext4 on a
    loop device (io), netns test hosts (bandwidth, partition), a process the
    rig started (process stop) and a freezer cgroup of its own (pause)."""

    disk_mnt: Path
    io_mnt: Path
    bed: NetBed
    victim: int
    box: str  # a freezer cgroup with a process in it
    specs: dict[str, tuple[pb.FaultSpec, pb.Target]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ns = pb.Target(netns_name=self.bed.a)
        self.specs = {
            "cpu": (pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=10)), pb.Target()),
            "memory": (pb.FaultSpec(memory=pb.MemorySpec(bytes=16 * MIB)), pb.Target()),
            "disk": (
                pb.FaultSpec(disk=pb.DiskSpec(path=str(self.disk_mnt), fill_percent=50)),
                pb.Target(),
            ),
            "io": (
                pb.FaultSpec(
                    io=pb.IoSpec(
                        path=str(self.io_mnt),
                        workers=1,
                        mode=pb.IO_MODE_WRITE,
                        bytes_per_worker=2 * MIB,
                        block_size_bytes=64 * 1024,
                    )
                ),
                pb.Target(),
            ),
            "bandwidth": (
                pb.FaultSpec(
                    bandwidth=pb.BandwidthSpec(
                        rate_bits_per_second=50_000_000, interface=self.bed.a_to_b
                    )
                ),
                ns,
            ),
            "partition": (
                pb.FaultSpec(partition=pb.PartitionSpec(peers=[self.bed.b.v4, self.bed.b.v6])),
                ns,
            ),
            "process": (
                pb.FaultSpec(process=pb.ProcessSpec(action=pb.PROCESS_ACTION_STOP)),
                pb.Target(pid=self.victim),
            ),
            "pause": (pb.FaultSpec(pause=pb.PauseSpec()), pb.Target(cgroup=self.box)),
            "dns": (pb.FaultSpec(dns=pb.DnsSpec()), ns),
            "dns_answers": (
                pb.FaultSpec(
                    dns=pb.DnsSpec(
                        names=["*.brownout.test"],
                        answer=pb.DNS_ANSWER_SERVFAIL,
                        resolvers=[self.bed.b.v4],
                    )
                ),
                ns,
            ),
        }

    def residue(self, agent: AgentProc) -> list[str]:
        """Everything a fault could leave behind; empty means clean."""
        found: list[str] = [f"process {m}" for m in agent.marked_processes()]
        for mnt in (self.disk_mnt, self.io_mnt):
            d = mnt / ".brownout"
            if d.exists():
                found += [f"file {d / n}" for n in os.listdir(d)]
        for dev in (self.bed.a_to_b, self.bed.a_to_c):
            qdisc = nsrun(self.bed.a, "tc", "qdisc", "show", "dev", dev)
            if "tbf" in qdisc or "htb" in qdisc or "netem" in qdisc:
                found.append(f"qdisc on {dev}: {qdisc.strip()}")
            filters = nsrun(self.bed.a, "tc", "filter", "show", "dev", dev).strip()
            if filters:
                found.append(f"filters on {dev}: {filters}")
        if psutil.Process(self.victim).status() == psutil.STATUS_STOPPED:
            found.append(f"process {self.victim} left stopped")
        frozen = (CGROUP_ROOT / "freezer" / self.box.lstrip("/") / "freezer.state").read_text()
        if frozen.strip() != "THAWED":
            found.append(f"cgroup {self.box} left {frozen.strip()}")
        tables = nsrun(self.bed.a, "nft", "list", "tables")
        if "brownout" in tables:
            found.append(f"nft tables: {tables.strip()}")
        return found


@contextlib.contextmanager
def rig(base: Path) -> Iterator[Rig]:
    with tmpfs(base, "16m") as disk_mnt, loopfs(base, 48, "ext4") as io_mnt, net_bed() as bed:
        victim = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)", "brownout-rig-victim"],
            start_new_session=True,
        )
        boxed = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        try:
            with cgroup(["freezer"]) as box:
                box_dir = CGROUP_ROOT / "freezer" / box.lstrip("/")
                (box_dir / "cgroup.procs").write_text(str(boxed.pid))
                try:
                    yield Rig(disk_mnt, io_mnt, bed, victim.pid, box)
                finally:
                    (box_dir / "freezer.state").write_text("THAWED")
                    boxed.kill()
        finally:
            for p in (victim, boxed):
                p.kill()
                p.wait(10)


def agent_args() -> list[str]:
    # A 1 MiB disk reserve: the default 100 MiB is more than the scratch filesystems.
    return ["--disk-reserve", "1MiB"]
