"""The cgroup freezer: v1's freezer.state (THAWED, FREEZING, FROZEN) and v2's
cgroup.freeze with the `frozen` line of cgroup.events."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from agent.kernel import cgroups


@dataclass(frozen=True)
class Freezer:
    dir: Path
    version: int

    def record(self) -> dict[str, object]:
        return {"dir": str(self.dir), "version": self.version}


def of(placement: cgroups.Placement) -> Freezer | None:
    """The freezer of a placement: its cgroup in the v1 freezer hierarchy, or
    its v2 cgroup (every non-root v2 cgroup has cgroup.freeze)."""
    for cg in placement:
        if cg.hierarchy.version == 1 and "freezer" in cg.hierarchy.controllers:
            return Freezer(cg.dir, 1)
    for cg in placement:
        if cg.hierarchy.version == 2 and (cg.dir / "cgroup.freeze").exists():
            return Freezer(cg.dir, 2)
    return None


def available() -> str:
    """Why no cgroup can be frozen here ("" when one can)."""
    for h in cgroups.hierarchies():
        if h.version == 1 and "freezer" in h.controllers:
            return ""
        # The root cgroup has no cgroup.freeze: a child shows whether the kernel has it.
        if h.version == 2 and any((c / "cgroup.freeze").exists() for c in h.mount.iterdir()):
            return ""
    return "no cgroup freezer: neither a v1 freezer hierarchy nor cgroup v2 with cgroup.freeze"


def state(f: Freezer) -> str:
    """THAWED, FREEZING or FROZEN (v2's in-between shows as FREEZING).
    Raises FileNotFoundError when the cgroup is gone."""
    if f.version == 1:
        return (f.dir / "freezer.state").read_text().strip()
    asked = (f.dir / "cgroup.freeze").read_text().strip() == "1"
    events = dict(line.split(" ", 1) for line in (f.dir / "cgroup.events").read_text().splitlines())
    frozen = events.get("frozen", "0").strip() == "1"
    if frozen:
        return "FROZEN"
    return "FREEZING" if asked else "THAWED"


def _write(f: Freezer, frozen: bool) -> None:
    if f.version == 1:
        (f.dir / "freezer.state").write_text("FROZEN" if frozen else "THAWED")
    else:
        (f.dir / "cgroup.freeze").write_text("1" if frozen else "0")


def freeze(f: Freezer, settle: float = 2.0) -> float:
    """Freeze the cgroup and wait until every task in it is frozen; the seconds
    it took. TimeoutError if it is still FREEZING after `settle` (a task in an
    uninterruptible sleep): the caller thaws it again."""
    t0 = time.monotonic()
    _write(f, True)
    while state(f) != "FROZEN":
        if time.monotonic() - t0 > settle:
            raise TimeoutError(f"{f.dir} still freezing after {settle:g}s")
        if f.version == 1:
            _write(f, True)  # v1 retries freezing the stragglers on each write
        time.sleep(0.005)
    return time.monotonic() - t0


def thaw(f: Freezer) -> None:
    """Thaw the cgroup (idempotent). FileNotFoundError when it is gone."""
    _write(f, False)
