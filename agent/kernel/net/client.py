"""Netlink clients and the pool of sockets they run on, one per namespace and
protocol (see SocketPool), so no operation pays for a thread or a close."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import ClassVar, Self

from agent.kernel.errors import Gone
from agent.kernel.net import nlsock
from agent.kernel.net.netns import NetnsRef, open_checked, scratch_socket, socket_from


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
        """A socket in ref's namespace for the caller alone; Gone if the
        namespace vanished (checked on every borrow, pooled or not)."""
        key = (ref.dev, ref.ino, protocol)
        try:
            fd = open_checked(ref)
        except Gone:
            self._discard(key)
            raise
        with self._lock:
            idle = self._idle.get(key)
            sock = idle.pop()[1] if idle else None
        if sock is not None:
            os.close(fd)
        else:
            sock = nlsock.NlSocket(socket_from(ref, fd, protocol))
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


class NetlinkClient:
    """Base of the protocol clients (rtnl.Rtnl, nftables.Nft): one
    socket of `protocol`, in the namespace it was opened for."""

    protocol: ClassVar[int]

    def __init__(self, sock: nlsock.NlSocket) -> None:
        self._nl = sock

    @classmethod
    @contextmanager
    def open(cls, ref: NetnsRef) -> Iterator[Self]:
        """A client in ref's namespace (Gone if it vanished), on a pooled socket."""
        with borrow(ref, cls.protocol) as nl:
            yield cls(nl)

    @classmethod
    @contextmanager
    def scratch(cls) -> Iterator[Self]:
        """A client in a new, empty namespace that lives as long as the block."""
        with nlsock.NlSocket(scratch_socket(cls.protocol)) as nl:
            yield cls(nl)
