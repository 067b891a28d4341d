"""`make run` keeps working: the demo starts an agent and a service, runs the
example experiment through the controller, and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.host


def test_the_demo_injects_reverts_and_leaves_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli.demo"], capture_output=True, text=True, timeout=110
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "status    completed" in out.stdout
    assert "== residue: 0 worker process(es) left" in out.stdout
    assert out.stdout.rstrip().endswith("OK, experiment completed and reverted")
