"""Value checks for the `brownout` command's flags (and the experiment file's
`arguments:` mapping, which goes through the same parsers).

Each is an argparse type: a bad value is refused before anything is
contacted, and argparse names the flag. The agent checks what only it can
(interfaces, paths, its own limits); these catch the rest up front.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from brownout.addresses import parse_hostport, valid_hostname
from brownout.units import parse_duration, parse_percent, parse_size

T = TypeVar("T")
N = TypeVar("N", int, float)
IFNAMSIZ = 16  # the kernel's limit on interface names, NUL included


def checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _int(text)
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return checked(parse)


def bounded(parse: Callable[[str], N], ok: Callable[[N], bool], rule: str) -> Callable[[str], N]:
    """parse, then refuse a value that is not ok, saying the rule."""

    def check(text: str) -> N:
        value = parse(text)
        if not ok(value):
            raise ValueError(f"must be {rule}, got {text!r}")
        return value

    check.__name__ = getattr(parse, "__name__", "value")
    return checked(check)


duration = checked(parse_duration)
positive_duration = bounded(parse_duration, lambda v: v > 0, "more than 0")
size = checked(parse_size)
positive_size = bounded(parse_size, lambda v: v > 0, "more than 0 bytes")
percent = checked(parse_percent)
load_percent = bounded(parse_percent, lambda v: v >= 1, "between 1 and 100%")
positive_percent = bounded(parse_percent, lambda v: v > 0, "more than 0% and at most 100%")


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty")
    if "\0" in text:
        raise ValueError("must not contain a NUL byte")
    return text


text = checked(_text)


def _bounded_text(text: str) -> str:
    if len(_text(text)) > 256:
        raise ValueError(f"must be at most 256 characters, got {len(text)}")
    return text


bounded_text = checked(_bounded_text)
path = checked(lambda t: Path(_text(t)))


def _existing_file(text: str) -> Path:
    p = Path(_text(text))
    if not p.is_file():
        raise ValueError(f"{p} does not exist or is not a file")
    if not os.access(p, os.R_OK):
        raise ValueError(f"{p} is not readable")
    return p


existing_file = checked(_existing_file)


def _dir_path(text: str) -> Path:
    p = Path(_text(text))
    if p.exists() and not p.is_dir():
        raise ValueError(f"{p} exists and is not a directory")
    return p


dir_path = checked(_dir_path)


def _file_in_existing_dir(text: str) -> Path:
    p = Path(_text(text))
    if p.is_dir():
        raise ValueError(f"{p} is a directory; give a file path")
    if not p.parent.is_dir():
        raise ValueError(f"its directory {p.parent} does not exist")
    return p


file_in_existing_dir = checked(_file_in_existing_dir)


def _agent_address(text: str) -> str:
    return str(parse_hostport(text))


agent_address = checked(_agent_address)


def _listen_address(text: str) -> str:
    return str(parse_hostport(text, allow_any_port=True))


listen_address = checked(_listen_address)


def _dns_name(text: str) -> str:
    """NAME or NAME:PORT, a name that resolves to many agents."""
    name, sep, port = text.strip().rpartition(":")
    if not sep:
        name, port = text.strip(), ""
    if not valid_hostname(name):
        raise ValueError(f"{name!r} is not a DNS name")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"port {port!r} is out of range (1-65535)")
    return text.strip()


dns_name = checked(_dns_name)


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR (e.g. 10.0.0.0/24)") from None
    return text.strip()


cidr = checked(_cidr)


def _interface(text: str) -> str:
    name = _text(text)
    if len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name or name in ".":
        raise ValueError(f"{name!r} is not an interface name (at most 15 bytes, no '/')")
    return name


interface = checked(_interface)


def _cgroup(text: str) -> str:
    value = _text(text)
    if ".." in Path(value).parts:
        raise ValueError(f"{value!r} must not contain '..'")
    return value


cgroup = checked(_cgroup)
pid = int_in(1, 2**22)
