"""Boot Debian's kernel under QEMU with virtme-ng and run the guest scenarios once.

The guest shares this machine's root filesystem (read-only, over 9p), so it
runs this checkout with this interpreter. vng exits 255 even when the guest
script succeeded, so the guest's own exit code travels in a sentinel line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kernelvm.guest import RESULT_MARK
from tests.paths import ROOT

CACHE = Path(os.environ.get("KERNELVM_CACHE", ROOT / "kernelvm-cache"))
SENTINEL = "BROWNOUT-KERNELVM-EXIT "
BOOT_TIMEOUT = 270.0


@dataclass
class GuestRun:
    exit_code: int | None
    result: dict[str, Any]
    seconds: float
    console: str


def kernel() -> Path | None:
    """The prepared guest kernel (tests/kernelvm/prepare.sh writes its path)."""
    marker = CACHE / "vmlinuz.path"
    if not marker.exists():
        return None
    path = Path(marker.read_text().strip())
    version = path.name.removeprefix("vmlinuz-")
    if not path.exists() or not (Path("/lib/modules") / version / "modules.dep").exists():
        return None
    return path


def vng_command() -> list[str] | None:
    vng = Path(sys.executable).parent / "vng"
    return [str(vng)] if vng.exists() else None


def run_guest(vmlinuz: Path, vng: list[str], *args: str) -> GuestRun:
    """Boot the guest and run tests.kernelvm.guest (with args) in it."""
    script = (
        f"cd {shlex.quote(str(ROOT))} && PYTHONDONTWRITEBYTECODE=1 "
        f"{shlex.quote(sys.executable)} -m tests.kernelvm.guest {shlex.join(args)};"
        f" echo {SENTINEL}$?"
    )
    argv = [
        *vng,
        "-r",
        str(vmlinuz),
        "--disable-kvm",
        "--force-9p",
        "-m",
        "1G",
        "-p",
        "2",
        "--verbose",
        "--exec",
        script,
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    console = proc.stdout + proc.stderr
    code: int | None = None
    result: dict[str, Any] = {}
    for line in console.splitlines():
        if SENTINEL in line:
            tail = line.split(SENTINEL, 1)[1].strip()
            code = int(tail) if tail.isdigit() else None
        elif RESULT_MARK in line:
            result = json.loads(line.split(RESULT_MARK, 1)[1])
    return GuestRun(code, result, time.monotonic() - start, console)
