"""Network namespaces: resolving a fault's target and opening sockets inside one.

A netlink socket belongs to the namespace it was created in. Sockets for
another namespace are created on a fresh thread that calls setns(2) for
itself alone and then exits, so no agent thread ever changes namespace and a
failed switch back cannot strand one; the socket is then used from the
caller's thread. The scratch variant unshares an anonymous namespace that
lives only as long as its socket, so capability probes never touch the host.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from agent import nlsock
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


def _socket_from(ref: NetnsRef, fd: int, protocol: int) -> socket.socket:
    """A netlink socket in the namespace open at fd (closed here).

    A socket stays in the namespace it was created in, whichever thread uses
    it, so only its creation needs a thread inside the namespace.
    """
    if ref.own:
        os.close(fd)
        return nlsock.new_socket(protocol)

    def enter() -> None:
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {ref.label}: {os.strerror(err)}")
        finally:
            os.close(fd)

    return _on_thread(enter, lambda: nlsock.new_socket(protocol), ref.label)


class SocketPool:
    """Idle netlink sockets by namespace and protocol, reused by later operations.

    Reuse saves a thread per socket in another namespace, and closing an
    nfnetlink socket right after a commit that deleted rules waits for the
    kernel's RCU grace period (about 9 ms here); idle sockets are closed by a
    reaper thread instead. A socket holds its namespace alive, so sockets of
    other namespaces are kept only briefly: a container's network namespace
    (and its veth) must not outlive the container because of us.
    """

    IDLE_OWN = 60.0
    IDLE_OTHER = 3.0
    MAX_IDLE = 4  # per namespace and protocol: enough for concurrent faults

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[int, int, int], list[tuple[float, nlsock.NlSocket]]] = {}
        self._reaper: threading.Thread | None = None

    @contextmanager
    def borrow(self, ref: NetnsRef, protocol: int) -> Iterator[nlsock.NlSocket]:
        """A socket in ref's namespace for the caller alone; TargetGone if the
        namespace vanished (checked on every borrow, pooled or not)."""
        key = (ref.dev, ref.ino, protocol)
        try:
            fd = _open_checked(ref)
        except TargetGone:
            self._discard(key)
            raise
        with self._lock:
            idle = self._idle.get(key)
            sock = idle.pop()[1] if idle else None
        if sock is not None:
            os.close(fd)
        else:
            sock = nlsock.NlSocket(_socket_from(ref, fd, protocol))
        try:
            yield sock
        finally:
            self._give_back(key, sock, self.IDLE_OWN if ref.own else self.IDLE_OTHER)

    def _give_back(self, key: tuple[int, int, int], sock: nlsock.NlSocket, idle: float) -> None:
        if sock.broken:
            sock.close()
            return
        with self._lock:
            pooled = self._idle.setdefault(key, [])
            if len(pooled) >= self.MAX_IDLE:
                sock.close()
                return
            pooled.append((time.monotonic() + idle, sock))
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, name="netlink-reaper", daemon=True
                )
                self._reaper.start()

    def _discard(self, key: tuple[int, int, int]) -> None:
        with self._lock:
            stale = self._idle.pop(key, [])
        for _, sock in stale:
            sock.close()

    def _reap(self) -> None:
        """Close sockets as they expire; exit once none are idle (the next
        give-back starts a new reaper)."""
        while True:
            now = time.monotonic()
            expired: list[nlsock.NlSocket] = []
            with self._lock:
                for key, pooled in list(self._idle.items()):
                    expired += [sock for deadline, sock in pooled if deadline <= now]
                    keep = [(d, sock) for d, sock in pooled if d > now]
                    if keep:
                        self._idle[key] = keep
                    else:
                        del self._idle[key]
                done = not self._idle
                if done:
                    self._reaper = None
                nearest = min((d for p in self._idle.values() for d, _ in p), default=now)
            for sock in expired:
                sock.close()
            if done:  # decided under the lock: a give-back since then starts its own reaper
                return
            time.sleep(max(0.05, nearest - now))


_pool = SocketPool()


def borrow(ref: NetnsRef, protocol: int) -> AbstractContextManager[nlsock.NlSocket]:
    """A pooled netlink socket in ref's namespace (see SocketPool)."""
    return _pool.borrow(ref, protocol)


def scratch_socket(protocol: int) -> socket.socket:
    """A netlink socket in a new, empty namespace that lives as long as the socket."""

    def enter() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")

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


class NetlinkClient:
    """Base of the protocol clients (agent.netlink.Rtnl, agent.nftables.Nft): one
    socket of `protocol`, in the namespace it was opened for."""

    protocol: ClassVar[int]

    def __init__(self, sock: nlsock.NlSocket) -> None:
        self._nl = sock

    @classmethod
    @contextmanager
    def open(cls, ref: NetnsRef) -> Iterator[Self]:
        """A client in ref's namespace (TargetGone if it vanished), on a pooled socket."""
        with borrow(ref, cls.protocol) as nl:
            yield cls(nl)

    @classmethod
    @contextmanager
    def scratch(cls) -> Iterator[Self]:
        """A client in a new, empty namespace that lives as long as the block."""
        with nlsock.NlSocket(scratch_socket(cls.protocol)) as nl:
            yield cls(nl)
