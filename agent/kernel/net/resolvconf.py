"""The nameservers a network namespace's processes use: their resolv.conf.

`ip netns exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over
/etc/resolv.conf when the former exists; a process (a container's) sees
its own root's /etc/resolv.conf.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST = Path("/etc/resolv.conf")
NETNS_ETC = Path("/etc/netns")


def path_for(netns_name: str = "", pid: int = 0) -> Path:
    """The resolv.conf of a named namespace, of a process, or of the host."""
    if netns_name:
        own = NETNS_ETC / netns_name / "resolv.conf"
        return own if own.is_file() else HOST
    if pid:
        return Path(f"/proc/{pid}/root/etc/resolv.conf")
    return HOST


def parse(text: str) -> list[Address]:
    """The `nameserver` addresses, in order, once each; a scoped IPv6 address
    (fe80::1%eth0) and anything unparsable are left out."""
    found: list[Address] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            address = ipaddress.ip_address(words[1])
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


def nameservers(path: Path) -> list[Address]:
    """The nameservers of a resolv.conf; none if it cannot be read. glibc
    uses 127.0.0.1 when a resolv.conf names none, and so does this."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    return parse(text) or [ipaddress.IPv4Address("127.0.0.1")]
