"""descriptors.py: the soft descriptor limit is raised to the hard one, and
a fleet's connections close when idle only where one per agent would not fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from controller.agents.descriptors import RESERVE, fits
from tests.paths import ROOT

pytestmark = pytest.mark.unit


LOWERED = """
import json, resource
from controller.agents.descriptors import raise_soft_limit
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(json.dumps([raise_soft_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE), hard]))
"""


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    # In a process of its own: this one's limits stay as they are.
    out = subprocess.run([sys.executable, "-c", LOWERED], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    returned, soft, hard, was = json.loads(out.stdout)
    assert returned == soft == hard == was > 256


def test_connections_close_when_idle_only_past_the_budget() -> None:
    assert fits(20_000 - RESERVE, 20_000)
    assert not fits(20_000 - RESERVE + 1, 20_000)
    assert not fits(20_000, 20_000)
