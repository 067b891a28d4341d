"""Agent configuration: command-line flags, each with an environment variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.faults.base import Limits
from agent.units import argtype, parse_duration, parse_size


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


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BROWNOUT_{name}", default)


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid label {item!r}: use key=value")
        labels[key.strip()] = value.strip()
    return labels


def _identities(text: str) -> frozenset[str]:
    return frozenset(filter(None, (p.strip() for p in text.split(","))))


def _optional_path(name: str) -> Path | None:
    value = _env(name, "")
    return Path(value) if value else None


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=_optional_path("CONFIG"),
        help="YAML config file whose keys mirror these flags (env BROWNOUT_CONFIG);"
        " flags and BROWNOUT_* variables override it",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path(_env("STATE_DIR", "/var/lib/brownout")),
        help="journal directory (env BROWNOUT_STATE_DIR, default /var/lib/brownout)",
    )
    p.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="env BROWNOUT_LOG_LEVEL",
    )


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    add_common_flags(p)
    d = Limits()
    p.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:7070"), help="gRPC host:port")
    p.add_argument(
        "--metrics-listen",
        default=_env("METRICS_LISTEN", "127.0.0.1:9464"),
        help="Prometheus host:port; empty disables (env BROWNOUT_METRICS_LISTEN)",
    )
    p.add_argument(
        "--labels",
        type=argtype(parse_labels),
        default=parse_labels(_env("LABELS", "")),
        help="node labels k=v,k2=v2 (env BROWNOUT_LABELS)",
    )
    p.add_argument(
        "--max-fault-duration",
        type=argtype(parse_duration),
        default=parse_duration(_env("MAX_FAULT_DURATION", "1h")),
    )
    p.add_argument(
        "--max-lease-ttl",
        type=argtype(parse_duration),
        default=parse_duration(_env("MAX_LEASE_TTL", "5m")),
    )
    p.add_argument(
        "--min-lease-ttl",
        type=argtype(parse_duration),
        default=parse_duration(_env("MIN_LEASE_TTL", "1s")),
    )
    p.add_argument(
        "--memory-reserve",
        type=argtype(parse_size),
        default=parse_size(_env("MEMORY_RESERVE", str(d.memory_reserve_bytes))),
        help="memory never taken by leaks: the larger of this and 5%% of RAM",
    )
    p.add_argument(
        "--disk-reserve",
        type=argtype(parse_size),
        default=parse_size(_env("DISK_RESERVE", str(d.disk_reserve_bytes))),
        help="disk never filled unless allow_full: the larger of this and 1%% of the filesystem",
    )
    p.add_argument(
        "--max-active-faults",
        type=int,
        default=int(_env("MAX_ACTIVE_FAULTS", str(d.max_active_faults))),
    )
    p.add_argument(
        "--oom-score-adj",
        type=int,
        default=int(_env("OOM_SCORE_ADJ", "-900")),
        help="the agent's own oom_score_adj, so leaks are killed before it",
    )
    tls = p.add_argument_group("security (see docs/security.md)")
    tls.add_argument(
        "--tls-cert", type=Path, default=_optional_path("TLS_CERT"), help="env BROWNOUT_TLS_CERT"
    )
    tls.add_argument(
        "--tls-key", type=Path, default=_optional_path("TLS_KEY"), help="env BROWNOUT_TLS_KEY"
    )
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_optional_path("TLS_CLIENT_CA"),
        help="CA that signs client certificates (env BROWNOUT_TLS_CLIENT_CA)",
    )
    tls.add_argument(
        "--operators",
        type=_identities,
        default=_identities(_env("OPERATORS", "")),
        help="client identities (SAN or CN) allowed everything, comma-separated",
    )
    tls.add_argument(
        "--viewers",
        type=_identities,
        default=_identities(_env("VIEWERS", "")),
        help="client identities allowed GetInfo, ListFaults, GetFault, WatchFaults",
    )
    tls.add_argument(
        "--insecure-allow-remote",
        action="store_true",
        default=_env("INSECURE_ALLOW_REMOTE", "") == "1",
        help="serve plaintext on a non-loopback address (logged as a warning at every start)",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the bound ports as JSON here once serving",
    )


def from_args(ns: argparse.Namespace) -> AgentConfig:
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
        ),
        oom_score_adj=ns.oom_score_adj,
        ready_file=ns.ready_file,
        tls_cert=ns.tls_cert,
        tls_key=ns.tls_key,
        tls_client_ca=ns.tls_client_ca,
        operators=ns.operators,
        viewers=ns.viewers,
        insecure_allow_remote=ns.insecure_allow_remote,
    )
