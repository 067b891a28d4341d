"""Throwaway filesystems and cgroups that a host test creates and removes itself.

Disk tests only ever fill these: never the machine's real filesystems.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _umount(mnt: Path) -> None:
    for _ in range(50):
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)  # a worker killed a moment ago may still hold a file
    _run("umount", "-l", str(mnt))


@contextlib.contextmanager
def tmpfs(base: Path, size: str = "64m") -> Iterator[Path]:
    mnt = base / f"tmpfs-{secrets.token_hex(3)}"
    mnt.mkdir(parents=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "brownout-test", str(mnt))
    try:
        yield mnt
    finally:
        _umount(mnt)
        mnt.rmdir()


@contextlib.contextmanager
def loopfs(base: Path, size_mib: int = 128, fstype: str = "ext4") -> Iterator[Path]:
    """A loop-mounted filesystem; ext2 has no fallocate (its files use no extents)."""
    image = base / f"loop-{secrets.token_hex(3)}.img"
    mnt = base / f"loop-{secrets.token_hex(3)}"
    mnt.mkdir(parents=True)
    with image.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    # -m 0: no blocks reserved for root, so df's and statvfs's views agree.
    _run(f"mkfs.{fstype}", "-q", "-F", "-m", "0", str(image))
    _run("mount", "-o", "loop", str(image), str(mnt))
    try:
        yield mnt
    finally:
        _umount(mnt)
        mnt.rmdir()
        image.unlink()


def used_percent(path: Path) -> float:
    st = os.statvfs(path)
    used = st.f_blocks - st.f_bfree
    return 100.0 * used / (used + st.f_bavail)


@contextlib.contextmanager
def cgroup(controllers: list[str], settings: dict[str, str] | None = None) -> Iterator[str]:
    """A fresh cgroup /brownout-test-XXXX in each named v1 hierarchy; yields its path.
    Settings are written as {file name: value} wherever the file exists."""
    name = f"/brownout-test-{secrets.token_hex(4)}"
    dirs = [CGROUP_ROOT / c / name.lstrip("/") for c in controllers]
    for d in dirs:
        d.mkdir()
    try:
        for key, value in (settings or {}).items():
            for d in dirs:
                if (d / key).exists():
                    (d / key).write_text(value)
        yield name
    finally:
        for d in dirs:
            for _ in range(100):
                # A test that failed early may leave members: move them out first.
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (d.parent / "cgroup.procs").write_text(pid)
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)  # killed members leave the cgroup a moment later


def v1_available(controller: str) -> bool:
    return (CGROUP_ROOT / controller / "cgroup.procs").exists() and any(
        f.name.startswith(controller + ".") for f in (CGROUP_ROOT / controller).iterdir()
    )


def cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return path
    return ""


def expect_error(
    c: AgentClient,
    lease_id: str,
    spec: pb.FaultSpec,
    code: grpc.StatusCode,
    prefix: str,
    target: pb.Target | None = None,
) -> str:
    """Inject, expect failure with `code` and a message starting with `prefix`."""
    with pytest.raises(grpc.RpcError) as err:
        c.inject(lease_id, spec, 30, target)
    details = err.value.details() or ""
    assert err.value.code() == code, details
    assert details.startswith(prefix), details
    return details
