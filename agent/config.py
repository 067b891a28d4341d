"""Agent configuration: one table of options, each a flag, a BROWNOUT_*
environment variable and a config-file key.

Precedence is flag > environment > file > built-in default. Every value is
checked wherever it comes from, and a bad one is refused before anything
starts, with a message that names where it came from (`--listen`,
`BROWNOUT_LISTEN` or the file's `listen`) and what is allowed.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.limits import Limits
from brownout.addresses import parse_hostport
from brownout.units import format_duration, parse_duration, parse_size

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_ACTIVE_FAULTS = 10_000
# The gRPC listener may take port 0 (any free port, reported in --ready-file).
ANY_PORT_NOTE = "port 0 picks a free port"


class ConfigError(ValueError):
    """A bad option value; the message names its source and the rule."""


@dataclass(frozen=True)
class AgentConfig:
    listen: str = "127.0.0.1:7070"
    state_dir: Path = Path("/var/lib/brownout")
    metrics_listen: str = "127.0.0.1:9464"
    labels: dict[str, str] = field(default_factory=dict)
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)
    oom_score_adj: int = -900
    ready_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    operators: frozenset[str] = frozenset()
    viewers: frozenset[str] = frozenset()
    insecure_allow_remote: bool = False
    # Lease datagrams' UDP port: SAME_PORT (the gRPC port's number), 0 (any
    # free port), a number, or None (off: leases are kept over gRPC only).
    heartbeat_port: int | None = -1


SAME_PORT = -1


def _heartbeat_port(text: str) -> int | None:
    value = text.strip().lower()
    if value == "same":
        return SAME_PORT
    if value == "off":
        return None
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{text!r}: give same, off, or a UDP port 0-65535") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: a UDP port is 0-65535 (0 picks a free one)")
    return port


# ------------------------------------------------------------------ parsers


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"invalid label {item!r}: use key=value")
        if key in labels:
            raise ValueError(f"label {key!r} is given twice")
        labels[key] = value.strip()
    return labels


def _identities(text: str) -> frozenset[str]:
    return frozenset(filter(None, (p.strip() for p in text.split(","))))


def _listen(text: str) -> str:
    return str(parse_hostport(text, allow_any_port=True))


def _metrics_listen(text: str) -> str:
    return "" if not text.strip() else str(parse_hostport(text, allow_any_port=True))


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("is empty: give a path")
    if "\0" in text:
        raise ValueError("must not contain a NUL byte")
    return Path(text)


def _state_dir(text: str) -> Path:
    path = _path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    return path


def _ready_file(text: str) -> Path:
    path = _path(text)
    if not path.parent.is_dir():
        raise ValueError(f"its directory {path.parent} does not exist")
    return path


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be more than 0, got {text!r}")
    return seconds


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean: use 1/0 or true/false")


def _log_level(text: str) -> str:
    if text not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text


def _comm_patterns(text: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"{p!r} is not a regular expression: {exc}") from None
    return patterns


# ------------------------------------------------------------------ options


@dataclass(frozen=True)
class Option:
    """One setting: its flag, variable, file key, parser, default and help."""

    dest: str
    parse: Callable[[str], Any]
    default: str | None  # as text; None: unset
    help: str
    flag_only: bool = False  # no variable or file key (e.g. --ready-file)
    switch: bool = False  # a flag without a value (store_true)

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def env(self) -> str:
        return "BROWNOUT_" + self.dest.upper()


_D = Limits()
COMMON = (
    Option("state_dir", _state_dir, "/var/lib/brownout", "journal directory"),
    Option("log_level", _log_level, "info", f"one of {', '.join(LOG_LEVELS)}"),
)
SERVE = (
    *COMMON,
    Option("listen", _listen, "127.0.0.1:7070", f"gRPC host:port ({ANY_PORT_NOTE})"),
    Option(
        "metrics_listen", _metrics_listen, "127.0.0.1:9464", "Prometheus host:port; empty disables"
    ),
    Option(
        "heartbeat_port",
        _heartbeat_port,
        "same",
        "UDP port for lease heartbeat datagrams: same (the gRPC port's number), a port"
        " (0: any free one), or off",
    ),
    Option("labels", parse_labels, "", "node labels k=v,k2=v2"),
    Option("max_fault_duration", _positive_duration, "1h", "longest fault a client may ask for"),
    Option("max_lease_ttl", _positive_duration, "5m", "longest lease TTL a client may ask for"),
    Option("min_lease_ttl", _positive_duration, "1s", "shortest lease TTL a client may ask for"),
    Option(
        "memory_reserve",
        parse_size,
        str(_D.memory_reserve_bytes),
        "memory never taken by leaks: the larger of this and 5%% of RAM",
    ),
    Option(
        "disk_reserve",
        parse_size,
        str(_D.disk_reserve_bytes),
        "disk never filled unless allow_full: the larger of this and 1%% of the filesystem",
    ),
    Option(
        "max_active_faults",
        _int_in(1, MAX_ACTIVE_FAULTS),
        str(_D.max_active_faults),
        f"faults held at once (1-{MAX_ACTIVE_FAULTS})",
    ),
    Option(
        "process_match_cap",
        _int_in(1, 100_000),
        str(_D.process_match_cap),
        "most processes one process fault may match without allow_many",
    ),
    Option(
        "process_denylist",
        _comm_patterns,
        ",".join(_D.process_denylist),
        "comm patterns (full-match regexes, comma-separated) process faults refuse"
        " without allow_denylisted; empty: none",
    ),
    Option(
        "max_clock_offset",
        _positive_duration,
        "1h",
        "largest clock fault offset a client may ask for, either way",
    ),
    Option(
        "oom_score_adj",
        _int_in(-1000, 1000),
        "-900",
        "the agent's own oom_score_adj (-1000..1000), so leaks are killed before it",
    ),
    Option("tls_cert", _path, None, "the agent's certificate (PEM)"),
    Option("tls_key", _path, None, "the agent's private key (PEM)"),
    Option("tls_client_ca", _path, None, "CA that signs client certificates"),
    Option("operators", _identities, "", "client identities (SAN or CN) allowed everything"),
    Option(
        "viewers",
        _identities,
        "",
        "client identities allowed GetInfo, ListFaults, GetFault, WatchFaults",
    ),
    Option(
        "insecure_allow_remote",
        parse_bool,
        "0",
        "serve plaintext on a non-loopback address (logged as a warning at every start)",
        switch=True,
    ),
    Option(
        "ready_file",
        _ready_file,
        None,
        "write the bound ports as JSON here once serving",
        flag_only=True,
    ),
)
# Variables the agent reads (the config file's own path included).
ENV_VARS = frozenset({"BROWNOUT_CONFIG"} | {o.env for o in SERVE if not o.flag_only})


def add_flags(p: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """Flags keep the raw text (None when not given): resolve() parses them,
    so a bad value is reported the same way whatever its source."""
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config file whose keys mirror these flags (env BROWNOUT_CONFIG);"
        " flags and BROWNOUT_* variables override it",
    )
    for o in options:
        where = "" if o.flag_only else f" (env {o.env})"
        default = "" if o.default in (None, "", "0") or o.switch else f"; default {o.default}"
        if o.switch:
            p.add_argument(o.flag, dest=o.dest, action="store_const", const="1", default=None,
                           help=o.help + where)  # fmt: skip
        else:
            p.add_argument(o.flag, dest=o.dest, default=None, metavar=o.dest.upper(),
                           help=o.help + where + default)  # fmt: skip


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    add_flags(p, SERVE)


def add_common_flags(p: argparse.ArgumentParser) -> None:
    add_flags(p, COMMON)


def resolve(
    ns: argparse.Namespace,
    options: tuple[Option, ...],
    file_values: Mapping[str, str],
    file_name: str = "",
    env: Mapping[str, str] | None = None,
) -> None:
    """Replace each option's raw text on ns with its parsed value: the flag's,
    else the variable's, else the file's, else the default. Raises ConfigError."""
    env = os.environ if env is None else env
    for o in options:
        raw: str | None = getattr(ns, o.dest, None)
        source = o.flag
        if raw is None and not o.flag_only and o.env in env:
            raw, source = env[o.env], o.env
        if raw is None and o.dest in file_values:
            raw, source = file_values[o.dest], f"{file_name}: {o.dest}"
        if raw is None:
            raw, source = o.default, f"the default of {o.flag}"
        if raw is None:
            setattr(ns, o.dest, None)
            continue
        try:
            setattr(ns, o.dest, o.parse(raw))
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if hasattr(ns, "min_lease_ttl") and ns.min_lease_ttl > ns.max_lease_ttl:
        raise ConfigError(
            f"--min-lease-ttl ({format_duration(ns.min_lease_ttl)}) is longer than"
            f" --max-lease-ttl ({format_duration(ns.max_lease_ttl)})"
        )


def from_args(ns: argparse.Namespace) -> AgentConfig:
    """The config from serve flags that resolve() has parsed."""
    d = Limits()
    return AgentConfig(
        listen=ns.listen,
        state_dir=ns.state_dir,
        metrics_listen=ns.metrics_listen,
        labels=ns.labels,
        log_level=ns.log_level,
        limits=Limits(
            max_fault_duration=ns.max_fault_duration,
            max_lease_ttl=ns.max_lease_ttl,
            min_lease_ttl=ns.min_lease_ttl,
            memory_reserve_bytes=ns.memory_reserve,
            memory_reserve_percent=d.memory_reserve_percent,
            disk_reserve_bytes=ns.disk_reserve,
            disk_reserve_percent=d.disk_reserve_percent,
            max_active_faults=ns.max_active_faults,
            process_match_cap=ns.process_match_cap,
            process_denylist=ns.process_denylist,
            max_clock_offset=ns.max_clock_offset,
        ),
        oom_score_adj=ns.oom_score_adj,
        ready_file=ns.ready_file,
        tls_cert=ns.tls_cert,
        tls_key=ns.tls_key,
        tls_client_ca=ns.tls_client_ca,
        operators=ns.operators,
        viewers=ns.viewers,
        insecure_allow_remote=ns.insecure_allow_remote,
        heartbeat_port=ns.heartbeat_port,
    )
