"""Figures the reliability suite gathers (kills, faults survived, residue found),
printed at the end of the run and, with BROWNOUT_RELIABILITY_REPORT=path, written
there as JSON for docs/reliability.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability.common import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("brownout reliability figures")
    for name, figures in sorted(FIGURES.items()):
        line = ", ".join(f"{k}={v}" for k, v in figures.items())
        terminalreporter.write_line(f"{name}: {line}")
    path = os.environ.get("BROWNOUT_RELIABILITY_REPORT")
    if path:
        Path(path).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
