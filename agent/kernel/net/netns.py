"""Network namespaces: naming one, checking it is still the one recorded, and
opening netlink sockets inside it.

A netlink socket belongs to the namespace it was created in. Sockets for
another namespace are created on a fresh thread that calls setns(2) for
itself alone and then exits, so no agent thread ever changes namespace and a
failed switch back cannot strand one; the socket is then used from the
caller's thread. The scratch variant unshares an anonymous namespace that
lives only as long as its socket, so capability probes never touch the host.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.kernel.errors import Gone
from agent.kernel.libc import check, libc
from agent.kernel.net import nlsock

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11
NETNS_RUN_DIR = Path("/var/run/netns")
SELF_NETNS = "/proc/self/ns/net"
THREAD_TIMEOUT = 30.0
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # what ip-netns(8) names look like


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


def at_path(path: str, label: str) -> NetnsRef:
    """The namespace whose file is path; ValueError saying why there is none."""
    try:
        dev, ino = _identity(path)
    except OSError as exc:
        raise ValueError(f"{label}: no network namespace at {path} ({exc.strerror})") from None
    if not _is_netns(path):
        raise ValueError(f"{path} is not a network namespace file")
    return NetnsRef(label, path, dev, ino, (dev, ino) == _identity(SELF_NETNS))


def named(name: str) -> NetnsRef:
    """A namespace made by `ip netns add NAME` (a file under /var/run/netns)."""
    return at_path(str(NETNS_RUN_DIR / name), f"netns {name}")


def of_pid(pid: int) -> NetnsRef:
    return at_path(f"/proc/{pid}/ns/net", f"pid {pid}")


def open_checked(ref: NetnsRef) -> int:
    """An fd on the namespace, or Gone if it is not the one recorded."""
    try:
        fd = os.open(ref.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Gone(f"network namespace {ref.label} ({ref.path}) is gone") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (ref.dev, ref.ino):
        os.close(fd)
        raise Gone(f"network namespace {ref.label} is gone: {ref.path} now names another namespace")
    return fd


def _on_thread(enter: Callable[[], None], make: Callable[[], T], what: str) -> T:
    """make() on a fresh thread that first runs enter() (a namespace switch)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            enter()
            result.append(make())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"netns:{what}", daemon=True)
    thread.start()
    thread.join(THREAD_TIMEOUT)
    if thread.is_alive():
        raise TimeoutError(f"opening a socket in {what} did not finish within {THREAD_TIMEOUT:g}s")
    if failure:
        raise failure[0]
    return result[0]


def socket_from(ref: NetnsRef, fd: int, protocol: int) -> socket.socket:
    """A netlink socket in the namespace open at fd (closed here).

    A socket stays in the namespace it was created in, whichever thread uses
    it, so only its creation needs a thread inside the namespace.
    """
    if ref.own:
        os.close(fd)
        return nlsock.new_socket(protocol)

    def enter() -> None:
        try:
            check(libc.setns(fd, CLONE_NEWNET), f"setns into {ref.label}")
        finally:
            os.close(fd)

    return _on_thread(enter, lambda: nlsock.new_socket(protocol), ref.label)


def scratch_socket(protocol: int) -> socket.socket:
    """A netlink socket in a new, empty namespace that lives as long as the socket."""

    def enter() -> None:
        check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")

    return _on_thread(enter, lambda: nlsock.new_socket(protocol), "scratch")


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
