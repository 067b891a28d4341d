"""host:port addresses, checked the same way by the agent and the controller.

A port outside 1-65535 is an error (the socket layer would otherwise take it
modulo 65536, and 99999 would quietly serve on 34463); port 0 ("any free
port") only where the caller allows it. IPv6 hosts are bracketed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class HostPort:
    host: str  # without brackets
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: where plaintext may be served."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def valid_hostname(name: str) -> bool:
    """A DNS name (RFC 1123 labels), optionally with a trailing dot."""
    name = name.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(part) for part in name.split("."))


def parse_host(text: str) -> str:
    """An IP address or DNS name (IPv6 optionally bracketed); raises ValueError."""
    host = text.strip()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if host != bare or not valid_hostname(host):
        raise ValueError(f"{text!r} is not an IP address or host name")
    return host


def parse_hostport(text: str, allow_any_port: bool = False) -> HostPort:
    """'127.0.0.1:7070', '[::1]:7070' or 'node-a.example:7070'; raises ValueError
    saying what is wrong. allow_any_port accepts port 0 (the kernel picks one)."""
    s = text.strip()
    if not s:
        raise ValueError("is empty: give host:port, e.g. 127.0.0.1:7070")
    host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:7070, [::1]:7070)")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{text!r}: an IPv6 host goes in brackets, e.g. [::1]:7070")
    if not port.isdigit():
        raise ValueError(f"{text!r}: port {port!r} is not a number")
    number = int(port)
    lowest = 0 if allow_any_port else 1
    if not lowest <= number <= 65535:
        raise ValueError(f"{text!r}: port {number} is out of range ({lowest}-65535)")
    return HostPort(parse_host(host), number)
