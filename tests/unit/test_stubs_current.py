"""The committed gRPC stubs match what `make proto` generates from agent.proto."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.unit

GENERATED = ["agent_pb2.py", "agent_pb2.pyi", "agent_pb2_grpc.py", "agent_pb2_grpc.pyi"]


def test_generated_stubs_are_current(tmp_path: Path) -> None:
    src = tmp_path / "brownout" / "v1"
    src.mkdir(parents=True)
    shutil.copy(ROOT / "proto/brownout/v1/agent.proto", src / "agent.proto")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            str(src / "agent.proto"),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    stale = [
        name
        for name in GENERATED
        if (src / name).read_text() != (ROOT / "proto/brownout/v1" / name).read_text()
    ]
    assert not stale, f"stale generated stubs {stale}: run `make proto` and commit them"
