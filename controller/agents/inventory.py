"""Where the agents are: a YAML inventory, DNS names with many addresses, --agent flags.

A DNS name stands for a Kubernetes headless Service in front of the agent
DaemonSet: every A/AAAA record is one agent. Labels given in the inventory are
merged over the labels each agent reports in GetInfo.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controller.errors import ConfigError

DEFAULT_PORT = 7070


@dataclass(frozen=True)
class AgentRef:
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = "flag"


def _host_port(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ConfigError("address", f"no host in {address!r}")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ConfigError("address", f"bad port in {address!r}") from None
    if not 0 < number < 65536:
        raise ConfigError("address", f"port out of range in {address!r}")
    return host, number


def host_of(address: str) -> str:
    """The host of a normalized agent address (brackets removed from IPv6)."""
    return _host_port(address)[0]


def join(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def normalize(address: str) -> str:
    return join(*_host_port(address))


def _labels(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "labels must be a mapping of key: value")
    return {str(k): str(v) for k, v in raw.items()}


def resolve_dns(
    name: str, labels: Mapping[str, str] | None = None, default_port: int = DEFAULT_PORT
) -> list[AgentRef]:
    """Every address a name resolves to, as agents on the given port."""
    host, port = _host_port(name, default_port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"dns {name}", f"cannot resolve: {exc.strerror}") from None
    addresses = sorted({join(str(info[4][0]), port) for info in infos})
    return [AgentRef(a, dict(labels or {}), f"dns:{host}") for a in addresses]


def load_file(path: Path) -> list[AgentRef]:
    """Read an inventory: {agents: [{address, labels}], dns: [{name, port, labels}]}."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read inventory: {exc}") from None
    if isinstance(data, list):
        data = {"agents": data}
    if not isinstance(data, Mapping):
        raise ConfigError(str(path), "expected a mapping with agents: and/or dns:")
    unknown = set(data) - {"agents", "dns"}
    if unknown:
        raise ConfigError(str(path), f"unknown keys {sorted(unknown)}: use agents and dns")
    refs: list[AgentRef] = []
    for i, entry in enumerate(data.get("agents") or []):
        where = f"{path}: agents[{i}]"
        if isinstance(entry, str):
            entry = {"address": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("address"), str):
            raise ConfigError(where, "each agent needs an address (host:port)")
        refs.append(
            AgentRef(normalize(entry["address"]), _labels(entry.get("labels"), where), str(path))
        )
    for i, entry in enumerate(data.get("dns") or []):
        where = f"{path}: dns[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(where, "each dns entry needs a name")
        port = entry.get("port", DEFAULT_PORT)
        if not isinstance(port, int):
            raise ConfigError(f"{where}.port", "must be a number")
        refs += resolve_dns(entry["name"], _labels(entry.get("labels"), where), port)
    return refs


def build(
    inventory: Path | None = None,
    dns: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> list[AgentRef]:
    """All agents from every source, each address once; later sources add labels."""
    refs: list[AgentRef] = []
    if inventory is not None:
        refs += load_file(inventory)
    for name in dns:
        refs += resolve_dns(name)
    refs += [AgentRef(normalize(a), {}, "flag") for a in agents]
    merged: dict[str, AgentRef] = {}
    for ref in refs:
        prev = merged.get(ref.address)
        if prev is None:
            merged[ref.address] = ref
        else:
            merged[ref.address] = AgentRef(ref.address, {**prev.labels, **ref.labels}, prev.source)
    return list(merged.values())
