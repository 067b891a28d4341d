"""Test hosts for network faults: namespaces joined by veth pairs, and traffic
between them. Nothing here sends a packet outside namespaces made by the test.

Topology (addresses exist only inside these namespaces):

    B (10.231.1.2, fd42:b0:1::2) --veth-- A --veth-- C (10.231.2.2, fd42:b0:2::2)
                        A: 10.231.1.1, fd42:b0:1::1 / 10.231.2.1, fd42:b0:2::1
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def free_port() -> int:
    """A loopback TCP port free right now (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*argv: str, check: bool = True) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()}")
    return out.stdout


def nsrun(ns: str, *argv: str, check: bool = True) -> str:
    return run("ip", "netns", "exec", ns, *argv, check=check)


def in_ns(ns: str, fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run fn on a thread inside namespace ns (sockets it opens live there)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:
            failure.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"work in {ns} did not finish in {timeout}s")
    if failure:
        raise failure[0]
    return result[0]


@dataclass
class Host:
    ns: str
    v4: str
    v6: str
    ifname: str = ""


@dataclass
class NetBed:
    a: str  # the namespace under test
    b: Host
    c: Host
    a_to_b: str  # A's interface facing B
    a_to_c: str
    a_b: Host  # A's addresses on the B link
    a_c: Host
    servers: list[Server] = field(default_factory=list)

    @property
    def namespaces(self) -> list[str]:
        return [self.a, self.b.ns, self.c.ns]

    def serve(self, server: Server) -> Server:
        self.servers.append(server.start())
        return server


@contextlib.contextmanager
def net_bed() -> Iterator[NetBed]:
    tag = secrets.token_hex(3)
    a, b, c = f"bo{tag}a", f"bo{tag}b", f"bo{tag}c"
    bed = NetBed(
        a=a,
        b=Host(b, "10.231.1.2", "fd42:b0:1::2", f"bo{tag}p1"),
        c=Host(c, "10.231.2.2", "fd42:b0:2::2", f"bo{tag}p2"),
        a_to_b=f"bo{tag}ab",
        a_to_c=f"bo{tag}ac",
        a_b=Host(a, "10.231.1.1", "fd42:b0:1::1"),
        a_c=Host(a, "10.231.2.1", "fd42:b0:2::1"),
    )
    made: list[str] = []
    try:
        for ns in (a, b, c):
            run("ip", "netns", "add", ns)
            made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        for peer, ifname, mine in ((bed.b, bed.a_to_b, bed.a_b), (bed.c, bed.a_to_c, bed.a_c)):
            run("ip", "link", "add", ifname, "netns", a, "type", "veth", "peer", "name",
                peer.ifname, "netns", peer.ns)  # fmt: skip
            for ns, dev, host in ((a, ifname, mine), (peer.ns, peer.ifname, peer)):
                run("ip", "-n", ns, "addr", "add", f"{host.v4}/24", "dev", dev)
                run("ip", "-n", ns, "addr", "add", f"{host.v6}/64", "dev", dev, "nodad")
                run("ip", "-n", ns, "link", "set", dev, "up")
        yield bed
    finally:
        for s in bed.servers:
            s.stop()
        for ns in made:
            run("ip", "netns", "del", ns, check=False)


# ----------------------------------------------------------------- servers


class Server:
    """A TCP acceptor or UDP echo inside a namespace, on a bounded-lifetime thread."""

    def __init__(self, ns: str, proto: str, port: int) -> None:
        self.ns, self.proto, self.port = ns, proto, port
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Server:
        self._thread = threading.Thread(target=lambda: in_ns(self.ns, self._loop, 600), daemon=True)
        self._thread.start()
        assert self._ready.wait(5), f"{self.proto} server in {self.ns} did not start"
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        kind = socket.SOCK_STREAM if self.proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET6, kind) as s:  # dual stack: IPv4 and IPv6
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", self.port))
            if kind == socket.SOCK_STREAM:
                s.listen(16)
            s.settimeout(0.1)
            self._ready.set()
            deadline = time.monotonic() + 300
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    if kind == socket.SOCK_STREAM:
                        conn, _ = s.accept()
                        conn.close()
                    else:
                        data, addr = s.recvfrom(2048)
                        self.received.append(data)
                        s.sendto(data, addr)
                except TimeoutError:
                    continue
                except OSError:
                    continue


# ----------------------------------------------------------------- clients


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_connect(ns: str, addr: str, port: int, timeout: float = 1.5) -> str:
    """'ok', 'refused' (an RST came back), 'timeout' (silence) or 'error:<name>'."""

    def attempt() -> str:
        with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect((addr, port))
            except TimeoutError:
                return "timeout"
            except ConnectionRefusedError:
                return "refused"
            except OSError as exc:
                return f"error:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
            return "ok"

    return in_ns(ns, attempt, timeout + 5)


def udp_exchange(ns: str, addr: str, port: int, timeout: float = 1.0, payload: bytes = b"x") -> str:
    """'reply', 'refused' (an ICMP port unreachable came back), 'timeout', or
    'error:<name>' when the local kernel refused to send (EPERM from a drop)."""

    def attempt() -> str:
        with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((addr, port))
            try:
                s.send(payload)
                s.recv(2048)
            except TimeoutError:
                return "timeout"
            except ConnectionRefusedError:
                return "refused"
            except OSError as exc:
                return f"error:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
            return "reply"

    return in_ns(ns, attempt, timeout + 5)


def ping(ns: str, addr: str, count: int = 3) -> int:
    """Echo replies received from count pings (0.2 s apart, 1 s wait)."""
    out = nsrun(ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", addr, check=False)
    for line in out.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


# ----------------------------------------------------------------- capture


class Capture:
    """Counts TCP RSTs and ICMP/ICMPv6 errors seen on an interface (AF_PACKET)."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.ns, self.ifname = ns, ifname
        self.rst = 0
        self.icmp_errors = 0
        self.packets = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Capture:
        self._thread = threading.Thread(target=lambda: in_ns(self.ns, self._loop, 120), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as s:
            s.bind((self.ifname, 0))
            s.settimeout(0.1)
            self._ready.set()
            deadline = time.monotonic() + 100
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    frame = s.recv(65535)
                except TimeoutError:
                    continue
                self.packets += 1
                self._inspect(frame)

    def _inspect(self, frame: bytes) -> None:
        ethertype = struct.unpack_from(">H", frame, 12)[0]
        ip = frame[14:]
        if ethertype == 0x0800 and len(ip) >= 20:
            proto, l4 = ip[9], ip[(ip[0] & 0x0F) * 4 :]
            icmp_error = proto == 1 and l4[:1] in (b"\x03", b"\x0b")
        elif ethertype == 0x86DD and len(ip) >= 40:
            proto, l4 = ip[6], ip[40:]
            icmp_error = proto == 58 and l4[:1] in (b"\x01", b"\x03")
        else:
            return
        if proto == 6 and len(l4) >= 14 and l4[13] & 0x04:
            self.rst += 1
        if icmp_error:
            self.icmp_errors += 1


# -------------------------------------------------------------- throughput


def throughput(src_ns: str, dst_ns: str, addr: str, port: int, seconds: float = 4.0) -> float:
    """Bits per second a TCP stream achieved from src to dst, measured at the
    receiver after the first second (so the token bucket's burst is left out)."""
    marks: list[tuple[float, int]] = []
    ready = threading.Event()

    def receive() -> None:
        with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(1)
            s.settimeout(10)
            ready.set()
            conn, _ = s.accept()
            with conn:
                conn.settimeout(10)
                total = 0
                while True:
                    data = conn.recv(1 << 16)
                    if not data:
                        break
                    total += len(data)
                    marks.append((time.monotonic(), total))

    def send() -> None:
        with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect((addr, port))
            chunk = b"\0" * (1 << 16)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                s.sendall(chunk)

    receiver = threading.Thread(target=lambda: in_ns(dst_ns, receive, seconds + 30), daemon=True)
    receiver.start()
    assert ready.wait(5)
    in_ns(src_ns, send, seconds + 20)
    receiver.join(seconds + 20)
    start = marks[0][0] + 1.0
    window = [(t, b) for t, b in marks if t >= start]
    assert len(window) >= 2, "too few samples to measure"
    (t0, b0), (t1, b1) = window[0], window[-1]
    return (b1 - b0) * 8 / (t1 - t0)


def qdisc_show(ns: str, dev: str) -> str:
    return nsrun(ns, "tc", "qdisc", "show", "dev", dev)


def nft_tables(ns: str) -> str:
    return nsrun(ns, "nft", "list", "tables")


def residue(ns: str, dev: str) -> dict[str, Any]:
    """What a fault could leave on dev: qdiscs, filters and nft tables. htb's
    direct_packets_stat is a packet counter, not state: a neighbour
    solicitation passing by moves it, so it is left out of the comparison."""
    return {
        "qdisc": re.sub(r" direct_packets_stat \d+", "", qdisc_show(ns, dev)),
        "filters": nsrun(ns, "tc", "filter", "show", "dev", dev),
        "nft": nft_tables(ns),
    }


def details(err: Any) -> str:
    """A gRPC error's details as text (its stub type allows None)."""
    return str(err.details() or "")
