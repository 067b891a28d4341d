"""Run journals in Chaos Toolkit's shape, plus Brownout's per-agent fault records.

Top-level keys follow chaostoolkit's journal (status, deviated, steady_states,
run, rollbacks, start, end, duration), so tools that read those can read ours.
Brownout's own records (selection, ramp steps, per-agent faults and revert
results, stop-condition evaluations) sit under extensions[name=brownout].
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from controller.experiments.model import Experiment
from controller.experiments.records import ENDED, RunJournal

STATUSES = tuple(str(s) for s in ENDED)


def new(experiment: Experiment, run_id: str, start: str) -> dict[str, Any]:
    """A journal as a run starts it (status running)."""
    return RunJournal(experiment, run_id, start).to_dict()


def brownout(journal: dict[str, Any]) -> dict[str, Any]:
    """Brownout's extension record inside a journal."""
    for ext in journal.get("extensions", []):
        if ext.get("name") == "brownout":
            return dict(ext)
    raise KeyError("journal has no brownout extension")


def dumps(journal: dict[str, Any]) -> str:
    return json.dumps(journal, indent=2, default=str)


def write(journal: dict[str, Any], path: Path) -> None:
    """Atomically: a reader sees the old journal or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps(journal))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary(journal: dict[str, Any]) -> str:
    b = brownout(journal)
    sel = b.get("selection") or {}
    lines = [
        f"run       {b['run_id']}",
        f"title     {journal['experiment'].get('title', '')}",
        f"status    {journal['status']}{'  (deviated)' if journal.get('deviated') else ''}",
    ]
    if b.get("reason"):
        lines.append(f"reason    {b['reason']}")
    duration = journal.get("duration")
    took = "-" if duration is None else f"{duration:.1f}s"
    lines.append(f"started   {journal['start']}  duration {took}")
    if sel:
        lines.append(
            f"targets   {len(sel.get('targets', []))} of {sel.get('fleet_size')} agents"
            f" (selector {sel.get('selector') or '-'}, mode {sel.get('mode')},"
            f" seed {sel.get('seed')})"
        )
    for step in b.get("steps", []):
        lines.append(
            f"step {step['index'] + 1}    {step['percent']:g}% -> {len(step['agents'])} agent(s)"
            f" ({step['blast_radius_percent']:.1f}% of fleet)"
        )
    for state in ("before", "after"):
        ss = journal["steady_states"].get(state)
        if ss is not None:
            lines.append(
                f"{state:<9} steady state {'met' if ss['steady_state_met'] else 'NOT met'}"
            )
    for problem in b.get("fault_problems", [])[:10]:
        lines.append(f"problem   {problem['agent']}: {problem['problem']}: {problem['detail']}")
    for address, agent in sorted(b.get("agents", {}).items()):
        faults = agent.get("faults", [])
        if agent.get("skipped"):
            lines.append(f"agent     {address}: skipped ({agent['skipped']})")
            continue
        if not faults and not agent.get("lost"):
            continue
        reverted = sum(1 for f in faults if f.get("revert", {}).get("state") == "reverted")
        line = f"agent     {address}: {len(faults)} fault(s), {reverted} reverted"
        early = sum(1 for f in faults if f.get("ended_early"))
        failed = sum(1 for f in faults if f.get("error"))
        if failed:
            line += f", {failed} failed to inject"
        if early:
            line += f", {early} ended early"
        if agent.get("lost"):
            line += f", lease lost ({agent['lost']})"
        if agent.get("release_error"):
            line += f", release error ({agent['release_error']})"
        lines.append(line)
    return "\n".join(lines)
