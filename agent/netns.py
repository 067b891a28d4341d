"""Network namespaces: resolving a fault's target and running code inside one.

Code runs in a namespace on a fresh thread that calls setns(2) for itself
alone and then exits, so no agent thread ever changes namespace and a failed
switch back cannot strand one. Every netlink socket opened on that thread
(pyroute2 opens them lazily) lives in the target namespace. The scratch
variant unshares an anonymous namespace that vanishes with the thread, so
capability probes never touch the host.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import InvalidArgument, TargetGone
from brownout.v1 import agent_pb2 as pb

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11
NETNS_RUN_DIR = Path("/var/run/netns")
SELF_NETNS = "/proc/self/ns/net"
THREAD_TIMEOUT = 30.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_libc = ctypes.CDLL(None, use_errno=True)
# Each netns thread runs its own event loop; asyncio's per-loop debug lines are noise.
logging.getLogger("asyncio").setLevel(logging.WARNING)


@dataclass(frozen=True)
class NetnsRef:
    """A network namespace: how it was named, the file to open, its identity."""

    label: str  # for people: "host", "pid 42", "netns test1", "/run/netns/x"
    path: str
    dev: int
    ino: int
    own: bool  # the agent's own namespace (its listener and controller live here)

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "path": self.path, "dev": self.dev, "ino": self.ino}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> NetnsRef:
        dev, ino = int(rec["dev"]), int(rec["ino"])
        return cls(
            str(rec["label"]), str(rec["path"]), dev, ino, (dev, ino) == _identity(SELF_NETNS)
        )


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _is_netns(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def own() -> NetnsRef:
    dev, ino = _identity(SELF_NETNS)
    return NetnsRef("host", SELF_NETNS, dev, ino, True)


def resolve(target: pb.Target) -> NetnsRef:
    """The namespace a network fault lands in; InvalidArgument if there is none."""
    selector = target.WhichOneof("selector")
    if selector is None:
        return own()
    if selector == "cgroup":
        raise InvalidArgument(
            "target.cgroup",
            "network faults target a network namespace: use pid, netns_path or netns_name",
        )
    if selector == "pid":
        if target.pid <= 0:
            raise InvalidArgument("target.pid", f"must be a positive pid, got {target.pid}")
        return _from_path("target.pid", f"/proc/{target.pid}/ns/net", f"pid {target.pid}")
    if selector == "netns_name":
        name = target.netns_name
        if not _NAME.match(name) or name in (".", ".."):
            raise InvalidArgument(
                "target.netns_name", f"{name!r} is not a namespace name ([A-Za-z0-9_.-], 1-64)"
            )
        return _from_path("target.netns_name", str(NETNS_RUN_DIR / name), f"netns {name}")
    path = target.netns_path
    if not path.startswith("/"):
        raise InvalidArgument("target.netns_path", f"must be an absolute path, got {path!r}")
    return _from_path("target.netns_path", path, path)


def _from_path(field: str, path: str, label: str) -> NetnsRef:
    try:
        dev, ino = _identity(path)
    except OSError as exc:
        raise InvalidArgument(
            field, f"{label}: no network namespace at {path} ({exc.strerror})"
        ) from None
    if not _is_netns(path):
        raise InvalidArgument(field, f"{path} is not a network namespace file")
    return NetnsRef(label, path, dev, ino, (dev, ino) == _identity(SELF_NETNS))


def _open_checked(ref: NetnsRef) -> int:
    """An fd on the namespace, or TargetGone if it is not the one recorded."""
    try:
        fd = os.open(ref.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TargetGone(f"network namespace {ref.label} ({ref.path}) is gone") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (ref.dev, ref.ino):
        os.close(fd)
        raise TargetGone(
            f"network namespace {ref.label} is gone: {ref.path} now names another namespace"
        )
    return fd


def _run_thread(enter: Callable[[], None], fn: Callable[[], Awaitable[T]], what: str) -> T:
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            enter()
            result.append(asyncio.run(_as_coroutine(fn)))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"netns:{what}", daemon=True)
    thread.start()
    thread.join(THREAD_TIMEOUT)
    if thread.is_alive():
        raise TimeoutError(f"netlink work in {what} did not finish within {THREAD_TIMEOUT:g}s")
    if failure:
        raise failure[0]
    return result[0]


async def _as_coroutine(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def run_in(ref: NetnsRef, fn: Callable[[], Awaitable[T]]) -> T:
    """Run fn's coroutine on a thread inside ref's namespace; TargetGone if it vanished."""
    fd = _open_checked(ref)

    def enter() -> None:
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {ref.label}: {os.strerror(err)}")
        finally:
            os.close(fd)

    return _run_thread(enter, fn, ref.label)


def run_in_scratch(fn: Callable[[], Awaitable[T]]) -> T:
    """Run fn's coroutine in a new, empty namespace that dies with the thread."""

    def enter() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")

    return _run_thread(enter, fn, "scratch")


def named_namespaces() -> list[NetnsRef]:
    """The host's namespace and every named one, for sweeps."""
    refs = [own()]
    try:
        names = sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except OSError:
        return refs
    seen = {(refs[0].dev, refs[0].ino)}
    for name in names:
        path = str(NETNS_RUN_DIR / name)
        try:
            ident = _identity(path)
        except OSError:
            continue
        if ident in seen or not _is_netns(path):
            continue
        seen.add(ident)
        refs.append(NetnsRef(f"netns {name}", path, *ident, False))
    return refs
