"""`brownout convert`: rewrite an experiment into the portable form, the one
file both `brownout run` and `chaos run` (with chaostoolkit-brownout) read.

Each `type: brownout` provider becomes the extension's action,
`{type: python, module: chaosbrownout.actions, func: inject_fault,
arguments: {kind, arguments | spec, target, duration}}`; a fault without a
duration gets the one `brownout run` would give it, written out (the
extension needs one); the extension's control is declared, so that `chaos
run` holds leases. Brownout's own settings stay under `extensions:`, which
Chaos Toolkit ignores. Everything else is left as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.experiments import parse as exp
from controller.experiments.model import FaultProvider
from controller.experiments.planning import fault_durations

CONTROL = {"name": "brownout", "provider": {"type": "python", "module": exp.EXTENSION_CONTROL}}


def _portable(provider: Mapping[str, Any], duration: float) -> dict[str, Any]:
    args: dict[str, Any] = {"kind": provider["fault"]}
    for key in ("arguments", "spec", "target"):
        if key in provider:
            args[key] = provider[key]
    args["duration"] = provider.get("duration", f"{duration:g}s")
    return {
        "type": "python",
        "module": exp.EXTENSION_ACTIONS,
        "func": "inject_fault",
        "arguments": args,
    }


def convert(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The portable document, and what was changed (one line each). The input
    is checked first: a file that does not parse is not converted."""
    experiment = exp.parse(doc)
    durations = fault_durations(experiment)
    out = dict(doc)
    changes: list[str] = []
    method = []
    for i, raw in enumerate(doc.get("method") or []):
        provider = raw.get("provider") if isinstance(raw, Mapping) else None
        if isinstance(provider, Mapping) and provider.get("type") == "brownout":
            activity = experiment.method[i]
            assert isinstance(activity.provider, FaultProvider)
            raw = {**raw, "provider": _portable(provider, durations[activity.name])}
            note = (
                f"method[{i}] {activity.name}: type brownout -> chaosbrownout.actions.inject_fault"
            )
            if "duration" not in provider:
                note += f" (duration {durations[activity.name]:g}s written out)"
            changes.append(note)
        method.append(raw)
    out["method"] = method
    if changes:
        controls = list(doc.get("controls") or [])
        declared = any(
            isinstance(c, Mapping)
            and isinstance(c.get("provider"), Mapping)
            and c["provider"].get("module") == exp.EXTENSION_CONTROL
            for c in controls
        )
        if not declared:
            out["controls"] = [*controls, CONTROL]
            changes.append("controls: chaosbrownout.control declared (leases under chaos run)")
    exp.parse(out)  # the portable form means the same to brownout run
    return out, changes + [f"not portable: {w}" for w in _brownout_only(doc)]


def _brownout_only(doc: Mapping[str, Any]) -> list[str]:
    """What Chaos Toolkit cannot run, left for a person to rewrite: Brownout's
    prometheus provider, and an HTTP probe's latency (chaoslib's HTTP answer
    has none; its provider's timeout bounds the latency instead)."""
    out: list[str] = []
    hypo = doc.get("steady-state-hypothesis")
    probes = hypo.get("probes") if isinstance(hypo, Mapping) else None
    sections = {
        "steady-state-hypothesis.probes": probes,
        "method": doc.get("method"),
        "rollbacks": doc.get("rollbacks"),
    }
    for name, activities in sections.items():
        for i, a in enumerate(activities if isinstance(activities, list) else []):
            if not isinstance(a, Mapping):
                continue
            p, t = a.get("provider"), a.get("tolerance")
            kind = p.get("type") if isinstance(p, Mapping) else None
            if kind == "prometheus":
                out.append(f"{name}[{i}]: the prometheus provider is Brownout's")
            if kind == "http" and isinstance(t, Mapping) and t.get("target") == "latency":
                out.append(f"{name}[{i}]: chaos run's http answer has no latency")
    return out
