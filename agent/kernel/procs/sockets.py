"""Whether a process holds a TCP socket: the far end of a connection, when it
is on this host (a local lease holder), from /proc/net/tcp{,6} and the
process's socket descriptors."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _decode(hexaddr: str) -> Address:
    """A /proc/net/tcp address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hexaddr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return ipaddress.IPv4Address(words)
    return ipaddress.IPv6Address(words)


def _same(a: Address, b: Address) -> bool:
    """Equal, counting an IPv4-mapped IPv6 address as its IPv4 form."""

    def plain(x: Address) -> Address:
        if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
            return x.ipv4_mapped
        return x

    return plain(a) == plain(b)


def is_local(address: Address) -> bool:
    """Whether address may be one of this network namespace's own: only a bind
    that fails with EADDRNOTAVAIL says it is not. Any other failure (a
    link-local address without its scope, say) answers "may be", so the
    socket tables are read rather than a local peer missed."""
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(address), 0))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL
    return True


def inodes_bound_to(ends: list[tuple[Address, int]]) -> dict[tuple[Address, int], set[int]]:
    """For each local end (address, port) on this node, the inodes of the TCP
    sockets in this network namespace bound to it. One read of each table
    (the kernel walks its whole socket hash for it: milliseconds)."""
    local = [e for e in ends if is_local(e[0])]
    found: dict[tuple[Address, int], set[int]] = {e: set() for e in local}
    if not local:
        return found
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            hexaddr, _, hexport = fields[1].partition(":")
            port = int(hexport, 16)
            for address, want in local:
                if port == want and _same(_decode(hexaddr), address):
                    found[(address, want)].add(int(fields[9]))
    return found


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets pid holds open (none when it is gone)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return set()
    found: set[int] = set()
    for fd in fds:
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found
