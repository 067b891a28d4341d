"""The session's residue check sees what a test leaves behind, and reaps it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests import residue

pytestmark = pytest.mark.host


def test_a_left_process_and_namespace_are_found_and_reaped(tmp_path: Path) -> None:
    before = residue.Snapshot()
    ns = f"bo-residue-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    code = "import time; time.sleep(600)"
    sleeper = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    try:
        found = residue.residue(before, tmp_path)
        assert f"netns: {ns}" in found
        assert any(f.startswith(f"process {sleeper.pid}:") for f in found), found
        residue.reap(before, tmp_path)
        assert sleeper.wait(5) != 0
        assert residue.residue(before, tmp_path) == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
