"""The controller's side of lease datagrams (brownout/heartbeat.py): one UDP
socket per address family for a whole fleet, on the fleet's event loop.

A heartbeat is a request with the key's next counter; its answer is matched by
(key id, counter) and checked against the key before it counts. What is sent
when, and what no answer means, is the keeper's (keeper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
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
        self._waiting: dict[tuple[bytes, int], Callable[[hb.Answer], None]] = {}
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

    def drain(self) -> None:
        """Read every answer waiting now (before calling a heartbeat unanswered)."""
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
        on_answer = self._waiting.pop((answer.key_id, answer.counter), None)
        if on_answer is None:
            self.stats.drop("late")  # a resent request's first answer, or a replay
            return
        self.stats.answered += 1
        on_answer(answer)

    def expect(self, key_id: bytes, counter: int, on_answer: Callable[[hb.Answer], None]) -> None:
        """Call on_answer with the genuine answer to (key id, counter), if one comes."""
        self._waiting[(key_id, counter)] = on_answer

    def unexpect(self, key_id: bytes, counter: int) -> None:
        self._waiting.pop((key_id, counter), None)

    def send(self, family: int, addr: tuple[str, int], data: bytes) -> None:
        """On the loop; a datagram the kernel will not take now counts as lost."""
        try:
            self._socket(family).sendto(data, addr)
            self.stats.sent += 1
        except (BlockingIOError, InterruptedError):  # send buffer full
            self.stats.drop("send_buffer")
        except OSError:  # no route now; resent like a lost datagram
            self.stats.drop("send_error")

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for s in self._socks.values():
            loop.remove_reader(s.fileno())
            s.close()
        self._socks.clear()
