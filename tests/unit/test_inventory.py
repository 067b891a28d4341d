"""Inventory: YAML file, DNS names with many addresses, --agent flags, merged labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.agents import inventory
from controller.errors import ConfigError

pytestmark = pytest.mark.unit


def test_yaml_inventory_with_labels_and_dns(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        """
agents:
  - address: 127.0.0.1:7071
    labels: {role: web, zone: a}
  - 127.0.0.2:7072
dns:
  - name: localhost
    port: 7073
    labels: {role: db}
"""
    )
    refs = {r.address: r for r in inventory.load_file(path)}
    assert refs["127.0.0.1:7071"].labels == {"role": "web", "zone": "a"}
    assert refs["127.0.0.2:7072"].labels == {}
    # localhost resolves to several addresses: each one is an agent.
    assert "127.0.0.1:7073" in refs
    assert refs["127.0.0.1:7073"].source == "dns:localhost"
    assert refs["127.0.0.1:7073"].labels == {"role": "db"}


def test_dns_name_gives_every_address() -> None:
    refs = inventory.resolve_dns("localhost:7070")
    addresses = [r.address for r in refs]
    assert "127.0.0.1:7070" in addresses
    assert all(a.endswith(":7070") for a in addresses)
    assert len(addresses) == len(set(addresses))


def test_sources_merge_by_address(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("agents: [{address: '127.0.0.1:7070', labels: {role: web}}]\n")
    refs = inventory.build(path, agents=["127.0.0.1:7070", "[::1]:7070", "127.0.0.3"])
    assert [r.address for r in refs] == ["127.0.0.1:7070", "[::1]:7070", "127.0.0.3:7070"]
    assert refs[0].labels == {"role": "web"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts: []", "unknown keys"),
        ("agents: [{labels: {a: b}}]", "needs an address"),
        ("agents: [{address: '127.0.0.1:99999'}]", "port out of range"),
        ("dns: [{name: no-such-host.invalid}]", "cannot resolve"),
    ],
)
def test_inventory_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        inventory.load_file(path)
