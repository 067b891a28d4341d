"""Run one experiment file with `chaos run` and with `brownout run`, against the
same service, and reduce both journals to what must agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.paths import ROOT

BIN = Path(sys.executable).parent
CORPUS = Path(__file__).parent / "corpus"


@dataclass
class Outcome:
    code: int
    journal: dict[str, Any]
    trace: list[dict[str, Any]]
    output: str


def environment(
    service_url: str, trace: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        **os.environ,
        "SERVICE_URL": service_url,
        "CTK_TRACE": str(trace),
        "PYTHONPATH": str(ROOT),
        **(extra or {}),
    }


def chaos_flags(path: Path) -> list[str]:
    """What chaos run takes on its command line and Brownout from runtime:."""
    doc = yaml.safe_load(path.read_text())
    h = (doc.get("runtime") or {}).get("hypothesis") or {}
    flags = []
    if "frequency" in h:
        flags += ["--hypothesis-frequency", str(h["frequency"])]
    if h.get("fail-fast"):
        flags.append("--fail-fast")
    return flags


def argv(
    tool: str, path: Path, workdir: Path, *extra: str, run_flags: tuple[str, ...] = ()
) -> list[str]:
    journal = workdir / f"{tool}.json"
    if tool == "chaos":
        return [str(BIN / "chaos"), "--no-version-check", "run", "--journal-path", str(journal),
                *chaos_flags(path), *extra, str(path)]  # fmt: skip
    return [str(BIN / "brownout"), *extra, "run", *run_flags, "--journal", str(journal),
            "--data-dir", str(workdir / "data"), str(path)]  # fmt: skip


def run(
    tool: str,
    path: Path,
    workdir: Path,
    env: dict[str, str],
    timeout: float = 120,
    extra: tuple[str, ...] = (),
    run_flags: tuple[str, ...] = (),
) -> Outcome:
    """`extra`: flags before `run` for brownout (e.g. --agent), after it for chaos;
    `run_flags`: brownout run's own."""
    workdir.mkdir(parents=True, exist_ok=True)
    journal, trace = workdir / f"{tool}.json", Path(env["CTK_TRACE"])
    trace.unlink(missing_ok=True)
    done = subprocess.run(
        argv(tool, path, workdir, *extra, run_flags=run_flags),
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = trace.read_text().splitlines() if trace.exists() else []
    return Outcome(
        done.returncode,
        json.loads(journal.read_text()) if journal.exists() else {},
        [json.loads(line) for line in lines],
        done.stdout + done.stderr,
    )


def _probes(state: dict[str, Any] | None) -> Any:
    if state is None:
        return None
    return state["steady_state_met"]


def _run_view(r: dict[str, Any]) -> tuple[str, str, str]:
    act = r["activity"]
    out = r.get("output")
    provider = act.get("provider", {})
    # Outputs of python functions must agree; HTTP answers differ in shape
    # (chaoslib parses JSON bodies and keeps headers; Brownout keeps the text).
    # The extension's fault actions answer with fault ids, which differ.
    ours = str(provider.get("module", "")).startswith("chaosbrownout")
    shown = (
        json.dumps(out, sort_keys=True) if provider.get("type") == "python" and not ours else "-"
    )
    return act.get("name", ""), r.get("status", ""), shown


def view(journal: dict[str, Any]) -> dict[str, Any]:
    """What both tools' journals must say alike about one run."""
    status, deviated = journal["status"], journal["deviated"]
    ext = [e for e in journal.get("extensions", []) if e.get("name") == "brownout"]
    if ext and status == "failed" and deviated:
        # Brownout calls a deviated run failed; chaoslib says completed, and
        # deviated (failed only when a probe of the hypothesis could not run).
        after = journal["steady_states"]["after"] or {"probes": []}
        if all(p["status"] == "succeeded" for p in after["probes"]):
            status = "completed"
    rollbacks = [
        _run_view(r)
        for r in journal["rollbacks"]
        if r["activity"].get("provider", {}).get("type") != "brownout"
    ]
    states = journal["steady_states"]
    return {
        "status": status,
        "deviated": deviated,
        "run": sorted(_run_view(r) for r in journal["run"]),
        "rollbacks": rollbacks,
        "before": _probes(states["before"]),
        "after": _probes(states["after"]),
        "during": bool(states.get("during")),
        "during_met": sorted({s["steady_state_met"] for s in states.get("during") or []}),
    }


def trace_view(trace: list[dict[str, Any]], ordered: bool) -> list[str]:
    events = [
        ":".join(str(e.get(k, "")) for k in ("event", "hook", "context", "label", "mode"))
        for e in trace
        if e["event"] != "fetch"  # probes run once per check; the check counts differ
    ]
    return events if ordered else sorted(events)


def report(journal: Path, out: Path, env: dict[str, str]) -> str:
    """`chaos report` (chaostoolkit-reporting) of a journal, as markdown."""
    done = subprocess.run(
        [str(BIN / "chaos"), "--no-version-check", "report", "--export-format=markdown",
         str(journal), str(out)],
        env={**env, "CTK_TOKEN": "-", "CTK_A": "0"}, cwd=out.parent, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    return out.read_text()
