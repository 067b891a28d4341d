"""The controller's side of lease datagrams (brownout/heartbeat.py): one UDP
socket per address family for a whole fleet, on the fleet's event loop.

A heartbeat is a request with the key's next counter; its answer is matched by
(key id, counter) and checked against the key before it counts. A datagram
that was lost is sent again (a new counter) a few times within the wait; no
answer at all within it tells the lease keeper to fall back to gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from dataclasses import dataclass, field

from brownout import heartbeat as hb

RESEND = 0.5  # seconds before a lost datagram is sent again


@dataclass
class Key:
    key_id: bytes
    key: bytes
    counter: int = 0

    def next(self) -> int:
        # Above the wall clock in ns, so a restarted holder still goes up.
        self.counter = max(self.counter + 1, time.time_ns())
        return self.counter


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # answers refused, by why

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


# Answers read per wakeup of the socket, so one burst cannot hold the loop.
BATCH = 256


class DatagramPort:
    """Made unopened; opened on the loop at first use, shared by a fleet's views.

    Plain non-blocking sockets read by the loop's reader callback, not an
    asyncio transport: a wakeup drains every answer waiting (one callback for
    a burst, not one each), and a heartbeat that seems unanswered first reads
    what is waiting, so a loop busy with other work (a fleet's setup) never
    mistakes its own lag for a silent agent and falls back to streams."""

    def __init__(self) -> None:
        self.keys: dict[bytes, Key] = {}
        self.stats = Stats()
        self._socks: dict[int, socket.socket] = {}
        self._waiting: dict[tuple[bytes, int], asyncio.Future[hb.Answer]] = {}
        self._resolved: dict[str, tuple[int, tuple[str, int]]] = {}

    def key(self, key_id: bytes, key: bytes) -> Key:
        return self.keys.setdefault(key_id, Key(key_id, key))

    def _socket(self, family: int) -> socket.socket:
        """One socket per family, however many holds use it (on the loop)."""
        s = self._socks.get(family)
        if s is None:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setblocking(False)
            hb.widen_receive_buffer(s)  # a fleet's answers arrive in bursts
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            asyncio.get_running_loop().add_reader(s.fileno(), self._drain, s)
            self._socks[family] = s
        return s

    def _drain(self, s: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                data = s.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket (port unreachable)
                self.stats.drop("icmp")
                continue
            self.received(data)

    def _drain_all(self) -> None:
        for s in list(self._socks.values()):
            self._drain(s)

    async def resolve(self, host: str, port: int) -> tuple[int, tuple[str, int]]:
        where = f"{host}:{port}"
        found = self._resolved.get(where)
        if found is None:
            with contextlib.suppress(ValueError):  # an address: no resolver thread
                ip = ipaddress.ip_address(host)
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                found = self._resolved[where] = (family, (str(ip), port))
        if found is None:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            family, _, _, _, addr = infos[0]
            found = self._resolved[where] = (family, (str(addr[0]), int(addr[1])))
        return found

    def received(self, data: bytes) -> None:
        try:
            k = self.keys.get(hb.answer_key_id(data))
            if k is None:
                self.stats.drop("unknown_key")
                return
            answer = hb.decode_answer(data, k.key)
        except hb.Malformed:
            self.stats.drop("malformed")
            return
        except hb.Forged:
            self.stats.drop("forged")
            return
        waiter = self._waiting.pop((answer.key_id, answer.counter), None)
        if waiter is None or waiter.done():
            self.stats.drop("late")  # a resent request's first answer, or a replay
            return
        self.stats.answered += 1
        waiter.set_result(answer)

    async def heartbeat(
        self, dest: tuple[str, int], k: Key, leases: list[str], wait: float
    ) -> hb.Answer | None:
        """Renew `leases` at dest under key k; the answer, or None if none came
        within `wait` seconds (each send waits RESEND before the next)."""
        family, addr = await self.resolve(*dest)
        sock = self._socket(family)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        pending: list[tuple[bytes, int]] = []
        answered: asyncio.Future[hb.Answer] = loop.create_future()
        try:
            while True:
                counter = k.next()
                pending.append((k.key_id, counter))
                self._waiting[(k.key_id, counter)] = answered
                try:
                    sock.sendto(hb.encode_request(k.key_id, k.key, counter, leases), addr)
                    self.stats.sent += 1
                except (BlockingIOError, InterruptedError):  # send buffer full: as if lost
                    self.stats.drop("send_buffer")
                except OSError:  # no route now; resent like a lost datagram
                    self.stats.drop("send_error")
                left = deadline - loop.time()
                if left <= 0:
                    return self._late(answered)
                # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow
                # a cancel that lands as the answer does, and stop() would wait
                # forever for a hold that never saw it.
                await asyncio.wait({answered}, timeout=min(RESEND, left))
                if answered.done():
                    return answered.result()
                if loop.time() >= deadline:
                    return self._late(answered)
        finally:
            for p in pending:
                self._waiting.pop(p, None)

    def _late(self, answered: asyncio.Future[hb.Answer]) -> hb.Answer | None:
        """At the deadline: an answer already waiting in the socket still counts."""
        self._drain_all()
        return answered.result() if answered.done() else None

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for s in self._socks.values():
            loop.remove_reader(s.fileno())
            s.close()
        self._socks.clear()
