"""What a test run may leave on the machine, seen from outside: processes of
the run, network namespaces, nftables tables and root qdiscs in the host's
own namespace, Brownout cgroups, and mounts. The session takes a snapshot at
its start and one at its end; anything new at the end is residue. It is
reaped (so the next run starts clean) and it fails the session, naming it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def netns() -> set[str]:
    return {line.split()[0] for line in _out(["ip", "netns", "list"]).splitlines() if line.strip()}


def nft_tables() -> set[str]:
    try:
        doc = json.loads(_out(["nft", "-j", "list", "tables"]) or "{}")
    except ValueError:
        return set()
    return {
        f"{t['table']['family']} {t['table']['name']}"
        for t in doc.get("nftables", [])
        if "table" in t
    }


def root_qdiscs() -> set[str]:
    """Root qdiscs of the host's namespace, without their reference counts."""
    lines = _out(["tc", "qdisc", "show"]).splitlines()
    return {re.sub(r" refcnt \d+", "", line.strip()) for line in lines if " root " in line}


def cgroups() -> set[str]:
    found: set[str] = set()
    for pattern in ("*/brownout*", "*/*/brownout*", "brownout*"):
        found |= {str(p) for p in CGROUP_ROOT.glob(pattern) if p.is_dir()}
    return found


def mounts() -> set[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    return {line for line in lines if "pytest" in line or "brownout" in line}


@dataclass
class Snapshot:
    netns: set[str] = field(default_factory=netns)
    nft_tables: set[str] = field(default_factory=nft_tables)
    root_qdiscs: set[str] = field(default_factory=root_qdiscs)
    cgroups: set[str] = field(default_factory=cgroups)
    mounts: set[str] = field(default_factory=mounts)


def leftover_processes(basetemp: Path | None) -> list[psutil.Process]:
    """This run's descendants, and any process whose command line names the
    run's temporary directory (a fork server or worker that outlived its agent
    is re-parented away from us, but still names its state dir)."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    if basetemp is not None:
        needle = str(basetemp)
        for p in psutil.process_iter(["cmdline"]):
            if p.pid != me.pid and any(needle in a for a in p.info["cmdline"] or ()):
                found.setdefault(p.pid, p)
    return [p for p in found.values() if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(p: psutil.Process) -> str:
    try:
        return f"process {p.pid}: {' '.join(p.cmdline())[:160]}"
    except psutil.Error:
        return f"process {p.pid}"


def residue(before: Snapshot, basetemp: Path | None) -> list[str]:
    after = Snapshot()
    found = [describe(p) for p in leftover_processes(basetemp)]
    for name in ("netns", "nft_tables", "root_qdiscs", "cgroups", "mounts"):
        new = getattr(after, name) - getattr(before, name)
        found += [f"{name}: {item}" for item in sorted(new)]
    return found


def reap(before: Snapshot, basetemp: Path | None) -> None:
    """Remove what residue() reported, so the machine is clean for the next run."""
    for p in leftover_processes(basetemp):
        with contextlib.suppress(psutil.Error):
            if p.status() == psutil.STATUS_STOPPED:
                p.send_signal(signal.SIGCONT)
            p.kill()
    after = Snapshot()
    for ns in after.netns - before.netns:
        _out(["ip", "netns", "delete", ns])
    for table in after.nft_tables - before.nft_tables:
        _out(["nft", "delete", "table", *table.split()])
    for line in sorted(after.mounts - before.mounts, key=lambda m: -len(m.split()[1])):
        _out(["umount", "-l", line.split()[1]])
    for cg in sorted(after.cgroups - before.cgroups, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(cg)
