"""Which processes hold a TCP socket: the owner of a connection's far end when
that end is on this host (a local lease holder), from /proc/net/tcp{,6} and
the processes' socket descriptors."""

from __future__ import annotations

import ipaddress
import os
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


def inodes_bound_to(address: Address, port: int) -> set[int]:
    """Inodes of the TCP sockets in this network namespace whose local end
    is address:port."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_addr, _, local_port = fields[1].partition(":")
            if int(local_port, 16) == port and _same(_decode(local_addr), address):
                found.add(int(fields[9]))
    return found


def owners(address: Address, port: int) -> set[int]:
    """The pids holding a TCP socket bound locally to address:port (none when
    that end is not on this host)."""
    inodes = inodes_bound_to(address, port)
    if not inodes:
        return set()
    wanted = {f"socket:[{i}]" for i in inodes}
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in wanted:
                    pids.add(int(entry))
                    break
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
    return pids
