"""The DNS answerer process (exec'd by the agent's spawner, with site packages
for dnslib; it dies with the agent).

After "go" it enters the target's network namespace and, for each upstream
resolver, binds a loopback port (UDP and TCP, the same number) that the
fault's nftables redirect sends that resolver's DNS to. It says "running"
followed by the ports, in the order of --upstream. Queries for the fault's
names are answered (or dropped, for a timeout); the rest go to the upstream
from a socket marked with --mark, which the redirect lets through.

UDP runs on one thread (selectors): a forwarded query gets an id of ours,
and the upstream's reply goes back to its client with the client's id. TCP
connections (rare: truncated answers, zone transfers) get a thread each, up
to MAX_TCP at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from agent.dnsanswer.rules import Address, Answer, Names, Policy, Verdict
from agent.kernel.libc import check, libc
from agent.workers.common import bind_to_parent, parser, ready, running

CLONE_NEWNET = 0x40000000
SO_MARK = 36
DNS_PORT = 53
PENDING_TTL = 10.0  # a forwarded query unanswered this long is forgotten
TCP_TIMEOUT = 10.0
MAX_TCP = 32
MAX_MESSAGE = 65535
BIND_TRIES = 20


def enter_netns(path: str, identity: str) -> None:
    """setns into the namespace at path, if it is still the one the agent resolved."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if f"{st.st_dev}:{st.st_ino}" != identity:
            raise SystemExit(f"network namespace {path} is gone: it now names another one")
        check(libc.setns(fd, CLONE_NEWNET), f"setns into {path}")
    finally:
        os.close(fd)


def family_of(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def loopback(address: Address) -> str:
    return "::1" if address.version == 6 else "127.0.0.1"


def bind_pair(address: Address) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free loopback port of address's family."""
    family = family_of(address)
    for _ in range(BIND_TRIES):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((loopback(address), 0))
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((loopback(address), udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(64)
        return udp, tcp
    raise SystemExit(f"no loopback port free for both UDP and TCP after {BIND_TRIES} tries")


def marked(family: socket.AddressFamily, kind: socket.SocketKind, mark: int) -> socket.socket:
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
    return s


@dataclass
class Pending:
    client_id: bytes
    client: tuple[str, int]
    listener: socket.socket
    sent: float


@dataclass
class Route:
    """One upstream resolver: where its redirected queries arrive, and the
    marked socket its forwarded ones leave by."""

    upstream: Address
    udp: socket.socket
    tcp: socket.socket
    out: socket.socket
    pending: dict[bytes, Pending] = field(default_factory=dict)
    next_id: int = 0

    def forward(self, data: bytes, client: tuple[str, int]) -> None:
        for _ in range(0x10000):
            self.next_id = (self.next_id + 1) & 0xFFFF
            ours = struct.pack(">H", self.next_id)
            if ours not in self.pending:
                break
        else:
            return  # 65,536 queries in flight: drop this one, as a full resolver would
        self.pending[ours] = Pending(data[:2], client, self.udp, time.monotonic())
        with contextlib.suppress(OSError):  # unreachable for now: the client retries
            self.out.send(ours + data[2:])

    def returned(self, data: bytes) -> None:
        entry = self.pending.pop(data[:2], None)
        if entry is not None:
            with contextlib.suppress(OSError):
                entry.listener.sendto(entry.client_id + data[2:], entry.client)

    def expire(self, now: float) -> None:
        for key in [k for k, p in self.pending.items() if now - p.sent > PENDING_TTL]:
            del self.pending[key]


def read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_framed(conn: socket.socket) -> bytes:
    (size,) = struct.unpack(">H", read_exact(conn, 2))
    return read_exact(conn, size)


def framed(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


class Answerer:
    def __init__(self, policy: Policy, upstreams: list[Address], mark: int) -> None:
        self.policy = policy
        self.mark = mark
        self.routes = []
        for upstream in upstreams:
            udp, tcp = bind_pair(upstream)
            out = marked(family_of(upstream), socket.SOCK_DGRAM, mark)
            out.connect((str(upstream), DNS_PORT))
            self.routes.append(Route(upstream, udp, tcp, out))
        self.tcp_slots = threading.BoundedSemaphore(MAX_TCP)

    @property
    def ports(self) -> list[int]:
        return [r.udp.getsockname()[1] for r in self.routes]

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        for route in self.routes:
            for s in (route.udp, route.out, route.tcp):
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, route)
        while True:
            for key, _ in sel.select(1.0):
                route = key.data
                if key.fileobj is route.udp:
                    self.on_query(route)
                elif key.fileobj is route.out:
                    self.on_reply(route)
                else:
                    self.on_connection(route)
            now = time.monotonic()
            for route in self.routes:
                route.expire(now)

    def on_query(self, route: Route) -> None:
        try:
            data, client = route.udp.recvfrom(MAX_MESSAGE)
        except OSError:
            return
        verdict, reply = self.policy.decide(data)
        if verdict is Verdict.ANSWER:
            with contextlib.suppress(OSError):
                route.udp.sendto(reply, client)
        elif verdict is Verdict.FORWARD:
            route.forward(data, client)

    def on_reply(self, route: Route) -> None:
        try:
            data = route.out.recv(MAX_MESSAGE)
        except OSError:
            return  # e.g. port unreachable from the resolver: the client retries
        route.returned(data)

    def on_connection(self, route: Route) -> None:
        try:
            conn, _ = route.tcp.accept()
        except OSError:
            return
        if not self.tcp_slots.acquire(blocking=False):
            conn.close()
            return
        threading.Thread(target=self.tcp_session, args=(route, conn), daemon=True).start()

    def tcp_session(self, route: Route, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            conn.settimeout(TCP_TIMEOUT)
            while True:
                query = read_framed(conn)
                verdict, reply = self.policy.decide(query)
                if verdict is Verdict.FORWARD:
                    if upstream is None:
                        upstream = marked(family_of(route.upstream), socket.SOCK_STREAM, self.mark)
                        upstream.settimeout(TCP_TIMEOUT)
                        upstream.connect((str(route.upstream), DNS_PORT))
                    upstream.sendall(framed(query))
                    reply = read_framed(upstream)
                if verdict is not Verdict.DROP:
                    conn.sendall(framed(reply))
        except (OSError, ConnectionError):
            pass
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()
            self.tcp_slots.release()


PARSER = parser("answer DNS for a fault's names; forward the rest", __file__)
PARSER.add_argument("--netns", required=True, help="the namespace file to enter")
PARSER.add_argument("--netns-id", required=True, help="its DEV:INO, as the agent resolved it")
PARSER.add_argument("--upstream", action="append", type=ipaddress.ip_address, required=True)
PARSER.add_argument("--name", action="append", required=True)
PARSER.add_argument("--answer", choices=[a.value for a in Answer], required=True)
PARSER.add_argument("--spoof", action="append", type=ipaddress.ip_address, default=[])
PARSER.add_argument("--mark", type=int, required=True)


def main() -> None:
    args = PARSER.parse_args()
    bind_to_parent(args.parent_pid)
    policy = Policy(Names.of(args.name), Answer(args.answer), tuple(args.spoof))
    ready()
    enter_netns(args.netns, args.netns_id)
    answerer = Answerer(policy, args.upstream, args.mark)
    running(",".join(map(str, answerer.ports)))
    answerer.serve()


if __name__ == "__main__":
    main()
