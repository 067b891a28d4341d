"""Real containers as targets: Debian's runc runs an OCI bundle built here from
busybox-static, with its own cgroups (cgroupfs driver, under a parent made
for the test) and its own network namespace, joined to a peer namespace by
a veth pair. Each fault kind lands inside the container and only there,
checked from outside; removing the container mid-fault ends the fault as
target_gone and leaves nothing behind.

runc, not crun: crun 1.8 refuses this machine's hybrid cgroup layout (its v2
hierarchy holds a controller), so crun's state file is covered by a unit test.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.nethosts import run

pytestmark = pytest.mark.host

CGROOT = Path("/sys/fs/cgroup")
BUSYBOX = Path("/usr/bin/busybox")
LOOP = "while true; do sleep 3600; done"  # a sleep that comes back when killed
MIB = 1 << 20


def need_runc() -> None:
    if shutil.which("runc") is None or not BUSYBOX.exists():
        pytest.fail("runc and busybox-static are needed (make system-deps installs them)")


@dataclass
class Ctr:
    id: str
    pid: int
    parent: str  # the cgroup made for the test, the container's is below it
    peer_ns: str
    ip: str  # the container's address
    peer_ip: str

    @property
    def cgroup(self) -> str:
        return f"{self.parent}/{self.id}"

    def procs(self, controller: str = "cpu") -> set[int]:
        path = CGROOT / controller / self.cgroup.lstrip("/") / "cgroup.procs"
        return {int(p) for p in path.read_text().split()}

    def in_net(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", *argv], capture_output=True, text=True
        )

    def sleeps(self) -> set[int]:
        return {p for p in self.procs() if psutil.Process(p).name() == "sleep"}


def bundle(base: Path, cgroups_path: str) -> Path:
    root = base / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for tool in ("sh", "sleep"):
        (root / "bin" / tool).symlink_to("busybox")
    (root / "etc" / "resolv.conf").write_text("nameserver 10.232.0.2\n")
    subprocess.run(["runc", "spec"], cwd=base, check=True)
    config = json.loads((base / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", LOOP]
    config["root"]["readonly"] = False
    config["linux"]["cgroupsPath"] = cgroups_path
    (base / "config.json").write_text(json.dumps(config))
    return base


@pytest.fixture
def ctr(tmp_path: Path) -> Iterator[Ctr]:
    need_runc()
    tag = secrets.token_hex(3)
    cid, parent, peer_ns = f"bo-ctr-{tag}", f"/brownout-test-{tag}", f"boctr{tag}"
    b = bundle(tmp_path / "bundle", f"{parent}/{cid}")
    try:
        # Detached, the container keeps runc's stdio: a file, never a pipe to wait on.
        with (tmp_path / "runc.log").open("w") as log:
            subprocess.run(
                ["runc", "run", "-d", "--bundle", str(b), cid],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        state = json.loads(run("runc", "state", cid))
        pid = int(state["pid"])
        host_if, ctr_if = f"boc{tag}h", f"boc{tag}c"
        run("ip", "netns", "add", peer_ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ctr_if)
        run("ip", "link", "set", host_if, "netns", peer_ns)
        run("ip", "link", "set", ctr_if, "netns", str(pid))
        run("ip", "-n", peer_ns, "addr", "add", "10.232.0.2/24", "dev", host_if)
        run("ip", "-n", peer_ns, "link", "set", host_if, "up")
        run("nsenter", "-t", str(pid), "-n", "ip", "addr", "add", "10.232.0.1/24", "dev", ctr_if)
        run("nsenter", "-t", str(pid), "-n", "ip", "link", "set", ctr_if, "up")
        run("nsenter", "-t", str(pid), "-n", "ip", "link", "set", "lo", "up")
        c = Ctr(cid, pid, parent, peer_ns, "10.232.0.1", "10.232.0.2")
        assert wait_for(lambda: bool(c.sleeps()), 5)
        yield c
    finally:
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True)
        subprocess.run(["ip", "netns", "del", peer_ns], capture_output=True)
        for hierarchy in CGROOT.iterdir():
            d = hierarchy / parent.lstrip("/")
            if d.is_dir():
                wait_for(lambda d=d: _rmdir(d), 5)


def _rmdir(d: Path) -> bool:
    for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
        try:
            sub.rmdir()
        except OSError:
            return False
    return not d.exists()


@pytest.fixture
def outsider() -> Iterator[psutil.Process]:
    """A `sleep` on the host, outside the container: never touched."""
    p = subprocess.Popen(["sleep", "600"])
    try:
        yield psutil.Process(p.pid)
    finally:
        p.kill()
        p.wait()


def inject(agent: AgentProc, spec: pb.FaultSpec, ctr: Ctr, ttl: float = 60) -> tuple[str, pb.Fault]:
    c = agent.client()
    lease = c.acquire_lease("test", ttl).lease_id
    fault = c.inject(lease, spec, 60, pb.Target(container=ctr.id))
    c.close()
    assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
    assert f"container {ctr.id}" in fault.applied["target"]
    assert "runc state" in fault.applied["target"]
    return lease, fault


def revert(agent: AgentProc, fault: pb.Fault) -> pb.Fault:
    with agent.client() as c:
        return c.revert(fault.id)


def cpu_seconds(ctr: Ctr) -> float:
    return int((CGROOT / "cpuacct" / ctr.cgroup.lstrip("/") / "cpuacct.usage").read_text()) / 1e9


def test_cpu_burns_inside_the_container(agent: AgentProc, ctr: Ctr) -> None:
    own = ctr.procs()
    spec = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=60))
    _, fault = inject(agent, spec, ctr)
    workers = ctr.procs() - own
    assert workers, "the CPU worker must run in the container's cgroup"
    assert all("brownout" in " ".join(psutil.Process(p).cmdline()) for p in workers)
    before, t0 = cpu_seconds(ctr), time.monotonic()
    time.sleep(1.5)
    burned = (cpu_seconds(ctr) - before) / (time.monotonic() - t0)
    assert 0.4 < burned < 0.8, f"{burned:.2f} cores charged to the container, asked 0.6"
    revert(agent, fault)
    assert wait_for(lambda: ctr.procs() == own, 5)


def test_a_leak_is_charged_to_the_container(agent: AgentProc, ctr: Ctr) -> None:
    usage = CGROOT / "memory" / ctr.cgroup.lstrip("/") / "memory.usage_in_bytes"
    before = int(usage.read_text())
    _, fault = inject(agent, pb.FaultSpec(memory=pb.MemorySpec(bytes=64 * MIB)), ctr)
    assert wait_for(lambda: int(usage.read_text()) - before >= 64 * MIB, 5), usage.read_text()
    revert(agent, fault)
    assert wait_for(lambda: int(usage.read_text()) - before < 8 * MIB, 5)


@pytest.mark.parametrize("kind", ["partition", "dns"])
def test_network_faults_land_in_the_container_namespace_only(
    agent: AgentProc, ctr: Ctr, kind: str
) -> None:
    def reachable() -> bool:
        return ctr.in_net("ping", "-c", "1", "-W", "1", ctr.peer_ip).returncode == 0

    def dns_sends() -> str:
        script = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "try:\n"
            f"    s.sendto(b'x' * 12, ({ctr.peer_ip!r}, 53)); print('sent')\n"
            "except PermissionError:\n"
            "    print('dropped')\n"
        )
        return ctr.in_net(sys.executable, "-c", script).stdout.strip()

    assert reachable() and dns_sends() == "sent"
    spec = (
        pb.FaultSpec(partition=pb.PartitionSpec(peers=[ctr.peer_ip]))
        if kind == "partition"
        else pb.FaultSpec(dns=pb.DnsSpec())
    )
    _, fault = inject(agent, spec, ctr)
    table = fault.applied["nft_table"].removeprefix("inet ")
    assert table in ctr.in_net("nft", "list", "tables").stdout
    assert table not in run("nft", "list", "tables"), "the host's namespace is never touched"
    if kind == "partition":
        assert not reachable()
    else:
        assert dns_sends() == "dropped" and reachable()
    revert(agent, fault)
    assert table not in ctr.in_net("nft", "list", "tables").stdout
    assert reachable() and dns_sends() == "sent"


def test_a_kill_reaches_the_container_processes_only(
    agent: AgentProc, ctr: Ctr, outsider: psutil.Process
) -> None:
    sleeps = ctr.sleeps()
    spec = pb.FaultSpec(process=pb.ProcessSpec(action=pb.PROCESS_ACTION_KILL, comm="sleep"))
    _, fault = inject(agent, spec, ctr)
    chosen = {int(p.split()[0]) for p in fault.applied["processes"].split("; ")}
    assert chosen == sleeps, fault.applied
    assert wait_for(lambda: bool(ctr.sleeps()) and not ctr.sleeps() & sleeps, 5)
    assert outsider.is_running() and outsider.status() != psutil.STATUS_ZOMBIE
    assert psutil.Process(ctr.pid).is_running(), "the container's init was not matched"
    revert(agent, fault)


def test_a_pause_freezes_the_container_only(
    agent: AgentProc, ctr: Ctr, outsider: psutil.Process
) -> None:
    state = CGROOT / "freezer" / ctr.cgroup.lstrip("/") / "freezer.state"
    _, fault = inject(agent, pb.FaultSpec(pause=pb.PauseSpec()), ctr)
    assert state.read_text().strip() == "FROZEN"
    assert outsider.status() != psutil.STATUS_STOPPED
    revert(agent, fault)
    assert state.read_text().strip() == "THAWED"


@pytest.mark.parametrize("kind", ["partition", "cpu"])
def test_removing_the_container_ends_the_fault_as_target_gone(
    agent: AgentProc, ctr: Ctr, kind: str
) -> None:
    spec = (
        pb.FaultSpec(partition=pb.PartitionSpec(peers=[ctr.peer_ip]))
        if kind == "partition"
        else pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=20))
    )
    _, fault = inject(agent, spec, ctr)
    subprocess.run(["runc", "kill", ctr.id, "KILL"], check=True)
    with agent.client() as c:
        assert wait_for(lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED, 10)
        ended = c.get_fault(fault.id)
    assert ended.end_reason == pb.END_REASON_TARGET_GONE, ended
    assert "exited" in ended.error
    assert wait_for(lambda: not agent.marked_processes(), 5)
    subprocess.run(["runc", "delete", "-f", ctr.id], check=True)  # its cgroup is free


def test_an_unknown_container_is_refused_and_leaves_nothing(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        spec = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=10))
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease, spec, 30, pb.Target(container="no-such-container"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "target.container" in (err.value.details() or "")
        assert "no running container" in (err.value.details() or "")
        assert not c.list_faults()
    assert not agent.marked_processes()
