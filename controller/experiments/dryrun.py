"""A dry run: resolve targets, check every planned fault against each agent's
capabilities and limits, run the before-hypothesis; take no lease, inject
nothing. The report says whether a real run would start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from controller.experiments.model import FaultProvider
from controller.experiments.planning import PreflightAbort, make_plan
from controller.experiments.window import WindowClosed

if TYPE_CHECKING:
    from controller.experiments.runner import Runner


def report(runner: Runner) -> dict[str, Any]:
    report: dict[str, Any] = {
        "dry_run": True,
        "title": runner.experiment.title,
        "ok": True,
    }
    try:
        report["window"] = runner.check_window()
    except WindowClosed as exc:
        report["window"], report["ok"] = str(exc), False
    if not runner.experiment.fault_actions:
        # No fault: no agent to ask, nothing to plan; the hypothesis decides.
        before = runner.hypothesis("before")
        report.update(selection=None, steps=[], faults=[], agents={})
        report["steady_state_before"] = before
        if before is not None and not before["steady_state_met"]:
            report["ok"] = False
        return report
    statuses = runner.fleet.statuses()
    try:
        plan = make_plan(runner.experiment, statuses, runner.options.seed)
    except PreflightAbort as exc:
        report.update(ok=False, error=str(exc))
        return report
    report["selection"] = plan.selection.as_dict()
    report["steps"] = plan.steps_record()
    report["faults"] = [
        {
            "action": a.name,
            "kind": a.provider.fault,
            "duration": plan.durations[a.name],
            "spec": json_format.MessageToDict(a.provider.spec, preserving_proto_field_name=True),
        }
        for a in runner.experiment.fault_actions
        if isinstance(a.provider, FaultProvider)
    ]
    report["agents"] = {
        a: {
            "reachable": st.reachable,
            "hostname": st.info.hostname if st.info else "",
            "labels": st.labels,
            "target": a in plan.targets,
            "skipped": plan.selection.skipped.get(a, ""),
            "problems": plan.problems.get(a, []),
        }
        for a, st in statuses.items()
    }
    for a in plan.targets:
        runner.report.event(f"dry run: {a}: {'; '.join(plan.problems.get(a, [])) or 'ok'}")
    before = runner.hypothesis("before")
    report["steady_state_before"] = before
    if not plan.targets or plan.problems or (before is not None and not before["steady_state_met"]):
        report["ok"] = False
    return report
