"""Value checks for the `brownout` command's flags. The fault options' parsers
live in brownout.faultspecs.values (an experiment's `arguments:` mapping uses
them too); these wrap them, and add the CLI's own (files, addresses).

Each is an argparse type: a bad value is refused before anything is
contacted, and argparse names the flag. The agent checks what only it can
(interfaces, paths, its own limits); these catch the rest up front.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from brownout.addresses import parse_hostport, valid_hostname
from brownout.faultspecs import values

T = TypeVar("T")


def checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    return checked(values.int_in(lo, hi))


duration = checked(values.duration)
positive_duration = checked(values.positive_duration)


def duration_at_least(seconds: float) -> Callable[[str], float]:
    return checked(
        values.bounded(values.duration, lambda v: v >= seconds, f"at least {seconds:g}s")
    )


size = checked(values.size)
positive_size = checked(values.positive_size)
percent = checked(values.percent)
load_percent = checked(values.load_percent)
positive_percent = checked(values.positive_percent)


text = checked(values.text)


def _bounded_text(text: str) -> str:
    if len(values.text(text)) > 256:
        raise ValueError(f"must be at most 256 characters, got {len(text)}")
    return text


bounded_text = checked(_bounded_text)
path = checked(lambda t: Path(values.text(t)))


def _existing_file(text: str) -> Path:
    p = Path(values.text(text))
    if not p.is_file():
        raise ValueError(f"{p} does not exist or is not a file")
    if not os.access(p, os.R_OK):
        raise ValueError(f"{p} is not readable")
    return p


existing_file = checked(_existing_file)


def _dir_path(text: str) -> Path:
    p = Path(values.text(text))
    if p.exists() and not p.is_dir():
        raise ValueError(f"{p} exists and is not a directory")
    return p


dir_path = checked(_dir_path)


def _file_in_existing_dir(text: str) -> Path:
    p = Path(values.text(text))
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


cidr = checked(values.cidr)


interface = checked(values.interface)


cgroup = checked(values.cgroup)
pid = checked(values.pid)


def _database(text: str) -> str:
    """A postgresql:// DSN, checked for form only (the server is asked at open)."""
    from controller.store import postgres  # psycopg, only for a command that has a DSN

    dsn = text.strip()
    if not postgres.is_dsn(dsn):
        raise ValueError(
            "give a postgresql://USER@HOST:PORT/DBNAME DSN (SQLite in --data-dir is the default;"
            " put a password in PGPASSWORD or ~/.pgpass, not on the command line)"
        )
    postgres.check_dsn(dsn)
    return dsn


database = checked(_database)
