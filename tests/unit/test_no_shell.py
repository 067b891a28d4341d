"""The agent never runs a shell, nor the tc/ip/nft/iptables binaries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.unit

AGENT = ROOT / "agent"
FORBIDDEN = re.compile(r"shell\s*=\s*True|os\.system\s*\(|os\.popen\s*\(|commands\.getoutput")
NET_BINARIES = re.compile(r"""["'](/usr)?(/s?bin/)?(tc|ip|nft|iptables|ip6tables)["']""")


def sources() -> list[Path]:
    files = sorted(AGENT.rglob("*.py"))
    assert files, "agent sources not found"
    return files


def test_no_shell_anywhere_in_the_agent() -> None:
    hits = [
        f"{path.relative_to(AGENT.parent)}:{n}: {line.strip()}"
        for path in sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not hits, "shell use in the agent:\n" + "\n".join(hits)


def test_no_network_binaries_in_the_agent() -> None:
    hits = [
        f"{path.relative_to(AGENT.parent)}:{n}: {line.strip()}"
        for path in sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if NET_BINARIES.search(line)
    ]
    assert not hits, "the agent must use netlink (pyroute2), not these binaries:\n" + "\n".join(
        hits
    )


def test_the_scan_catches_what_it_claims_to() -> None:
    assert FORBIDDEN.search("subprocess.run(cmd, shell=True)")
    assert FORBIDDEN.search("os.system('ls')")
    assert NET_BINARIES.search('subprocess.run(["tc", "qdisc"])')
    assert not NET_BINARIES.search('"tcp"')
