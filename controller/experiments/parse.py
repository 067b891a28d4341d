"""Parsing experiment files: Chaos Toolkit's format, with Brownout's settings in an extension.

    title, description, tags, configuration
    steady-state-hypothesis: {title, probes: [probe...]}
    method: [action | probe ...]        each may have pauses: {before, after}
    rollbacks: [action ...]
    extensions: [{name: brownout, targets, ramp, stop-conditions, lease-ttl, run-window,
                  timeline}]

Probes and actions name a provider: http, prometheus, process or python (a
module's function, as Chaos Toolkit runs it), or (actions only) brownout,
which injects a fault on every target. The portable form of a fault,
`{type: python, module: chaosbrownout.actions, func: inject_fault}`, is
recognised and run natively, never imported. Chaos Toolkit's `ref`,
`background`, `controls`, `secrets` and `runtime` are read too. Everything
is checked here, before any agent is contacted, and errors name the field.
"""

from __future__ import annotations

import importlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brownout import faultspecs
from controller.errors import ConfigError
from controller.experiments import fields, pyfuncs
from controller.experiments import tolerances as tol
from controller.experiments import window as win
from controller.experiments.model import (
    FAULT_KINDS,
    Activity,
    Control,
    Experiment,
    FaultProvider,
    HttpProvider,
    Hypothesis,
    NativeProvider,
    ProcessProvider,
    PrometheusProvider,
    Provider,
    PythonProvider,
    RampStep,
    Runtime,
    Settings,
    StopCondition,
)
from controller.experiments.selection import parse_mode, parse_selector

# The Chaos Toolkit extension's modules: its actions are run natively, its
# control is Brownout's own lease keeping, which `brownout run` does itself.
EXTENSION_ACTIONS = "chaosbrownout.actions"
EXTENSION_CONTROL = "chaosbrownout.control"
INJECT_ARGUMENTS = {"kind", "arguments", "spec", "duration", "target"}


@dataclass(frozen=True)
class _Ctx:
    """What an activity may refer to elsewhere in its file."""

    configuration: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    named: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # for ref
    controls: Mapping[str, Control] = field(default_factory=dict)  # top-level, by name


_NONE = _Ctx()

# --------------------------------------------------------------- providers


def fault_provider(raw: Mapping[str, Any], where: str) -> FaultProvider:
    """A `type: brownout` provider (fault, arguments or spec, target, duration)."""
    fields.no_unknown(raw, {"type", "fault", "arguments", "spec", "target", "duration"}, where)
    fault = fields.string(raw, "fault", where)
    spec, target = faultspecs.fault(
        fault, raw.get("arguments"), raw.get("spec"), raw.get("target"), where
    )
    duration = (
        fields.duration(raw["duration"], f"{where}.duration", False) if "duration" in raw else None
    )
    return FaultProvider(fault, spec, target, duration)


def _native(func: str, args: Mapping[str, Any], where: str) -> Provider:
    if func == "inject_fault":
        fields.no_unknown(args, INJECT_ARGUMENTS, f"{where}.arguments")
        kind = args.get("kind")
        if kind not in FAULT_KINDS:
            raise ConfigError(
                f"{where}.arguments.kind",
                f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}",
            )
        rest = {k: v for k, v in args.items() if k != "kind"}
        return fault_provider({"type": "brownout", "fault": kind, **rest}, f"{where}.arguments")
    if func == "revert_faults":
        fields.no_unknown(args, set(), f"{where}.arguments")
        return NativeProvider(func)
    if func == "halt":
        raise ConfigError(
            f"{where}.func",
            "under brownout run, halting is the kill switch's (brownout halt), not a step",
        )
    raise ConfigError(
        f"{where}.func",
        f"{EXTENSION_ACTIONS} has inject_fault, revert_faults and halt, not {func!r}",
    )


def _python(p: Mapping[str, Any], where: str, ctx: _Ctx) -> Provider:
    fields.no_unknown(p, {"type", "module", "func", "arguments", "secrets", "timeout"}, where)
    module, func = fields.string(p, "module", where), fields.string(p, "func", where)
    args = fields.mapping(p.get("arguments") or {}, f"{where}.arguments")
    if module == EXTENSION_ACTIONS:
        return _native(func, args, where)
    scopes = p.get("secrets") or []
    if isinstance(scopes, str):
        scopes = [scopes]
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        raise ConfigError(f"{where}.secrets", "a list of secret scopes")
    for scope in scopes:
        if scope not in ctx.secrets:
            known = ", ".join(ctx.secrets) or "none"
            raise ConfigError(f"{where}.secrets", f"no secret scope {scope!r} (declared: {known})")
    provider = PythonProvider(
        module=module,
        func=func,
        arguments=dict(args),
        secrets=tuple(scopes),
        timeout=fields.duration(p.get("timeout", 300), f"{where}.timeout", False),
        configuration=ctx.configuration,
        all_secrets=ctx.secrets,
    )
    pyfuncs.provider(provider, where)
    return provider


def _provider(raw: object, where: str, activity_type: str, ctx: _Ctx = _NONE) -> Provider:
    p = fields.mapping(raw, where)
    kind = p.get("type")
    if kind == "python":
        return _python(p, where, ctx)
    if kind == "http":
        fields.no_unknown(
            p, {"type", "url", "method", "headers", "body", "arguments", "timeout"}, where
        )
        body = p.get("body")
        if "arguments" in p:
            body = json.dumps(p["arguments"])
        headers = {
            str(k): str(v)
            for k, v in fields.mapping(p.get("headers") or {}, f"{where}.headers").items()
        }
        return HttpProvider(
            url=fields.string(p, "url", where),
            method=str(p.get("method", "GET")).upper(),
            headers=headers,
            body=None if body is None else str(body),
            timeout=fields.duration(p.get("timeout", 5), f"{where}.timeout", False),
        )
    if kind == "prometheus":
        fields.no_unknown(p, {"type", "url", "query", "timeout", "empty"}, where)
        empty = p.get("empty")
        if empty is not None and (isinstance(empty, bool) or not isinstance(empty, int | float)):
            raise ConfigError(f"{where}.empty", "must be a number")
        return PrometheusProvider(
            url=fields.string(p, "url", where),
            query=fields.string(p, "query", where),
            timeout=fields.duration(p.get("timeout", 5), f"{where}.timeout", False),
            empty=None if empty is None else float(empty),
        )
    if kind == "process":
        fields.no_unknown(p, {"type", "path", "arguments", "timeout"}, where)
        args = p.get("arguments", [])
        if isinstance(args, str):
            args = shlex.split(args)  # split like a shell would, but never run one
        if not isinstance(args, list):
            raise ConfigError(f"{where}.arguments", "expected a list of strings or one string")
        return ProcessProvider(
            path=fields.string(p, "path", where),
            arguments=tuple(str(a) for a in args),
            timeout=fields.duration(p.get("timeout", 30), f"{where}.timeout", False),
        )
    if kind == "brownout":
        if activity_type != "action":
            raise ConfigError(f"{where}.type", "brownout faults are actions, not probes")
        return fault_provider(p, where)
    raise ConfigError(
        f"{where}.type",
        f"unsupported provider {kind!r}: use http, prometheus, process, python"
        " or (actions) brownout",
    )


def probe(raw: object, where: str) -> Activity:
    """One probe, as a hypothesis (or a gate) holds it."""
    return _activity(raw, where, ("probe",))


def _control(raw: object, where: str) -> Control:
    c = fields.mapping(raw, where)
    fields.no_unknown(c, {"name", "provider", "scope", "automatic"}, where)
    name = fields.string(c, "name", where)
    p = fields.mapping(c.get("provider"), f"{where}.provider")
    fields.no_unknown(p, {"type", "module", "arguments"}, f"{where}.provider")
    if p.get("type") != "python":
        raise ConfigError(f"{where}.provider.type", "controls are python modules")
    module = fields.string(p, "module", f"{where}.provider")
    if module == EXTENSION_CONTROL:  # brownout run keeps its own leases: never imported
        return Control(fields.string(c, "name", where), module)
    pyfuncs.check_allowed(module, f"{where}.provider.module")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{where}.provider.module", f"cannot import {module!r} ({exc}); is it installed?"
        ) from None
    scope = c.get("scope")
    if scope not in (None, "before", "after"):
        raise ConfigError(f"{where}.scope", f"must be before or after, got {scope!r}")
    automatic = c.get("automatic", True)
    if not isinstance(automatic, bool):
        raise ConfigError(f"{where}.automatic", "must be true or false")
    args = fields.mapping(p.get("arguments") or {}, f"{where}.provider.arguments")
    return Control(name, module, dict(args), scope, automatic)


def _controls(raw: object, where: str, ctx: _Ctx) -> tuple[Control, ...]:
    """Controls as declared (an activity's may be {ref: NAME} to a top-level one);
    Brownout's own lease-keeping control is left to `brownout run`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(where, "expected a list of controls")
    out: list[Control] = []
    for i, c in enumerate(raw):
        w = f"{where}[{i}]"
        if isinstance(c, Mapping) and "ref" in c:
            if c["ref"] not in ctx.controls:
                known = ", ".join(ctx.controls) or "none"
                raise ConfigError(f"{w}.ref", f"no control named {c['ref']!r} (declared: {known})")
            out.append(ctx.controls[c["ref"]])
            continue
        control = _control(c, w)
        if control.module != EXTENSION_CONTROL:
            out.append(control)
    return tuple(out)


def _deref(raw: object, where: str, ctx: _Ctx) -> tuple[object, str]:
    """A {ref: NAME} entry: the activity of that name, parsed where it is used."""
    if not isinstance(raw, Mapping) or "ref" not in raw:
        return raw, where
    ref = raw["ref"]
    if set(raw) != {"ref"}:
        raise ConfigError(where, "a ref entry has only ref: NAME")
    if not isinstance(ref, str) or ref not in ctx.named:
        known = ", ".join(sorted(ctx.named)) or "none"
        raise ConfigError(f"{where}.ref", f"no activity named {ref!r} (named: {known})")
    return ctx.named[ref], f"{where} (ref {ref})"


def _tolerance(raw: object, where: str, ctx: _Ctx) -> tol.Tolerance:
    if isinstance(raw, Mapping) and raw.get("type") == "probe":
        provider = fields.mapping(raw.get("provider"), f"{where}.provider")
        if provider.get("type") != "python":
            raise ConfigError(
                f"{where}.provider.type",
                "a probe tolerance is a python function called with value=",
            )
        # Called with value= (the judged probe's output), as chaoslib does.
        args = fields.mapping(provider.get("arguments") or {}, f"{where}.provider.arguments")
        judge_raw = {**raw, "provider": {**provider, "arguments": {**args, "value": None}}}
        return tol.Tolerance("probe", probe=_activity(judge_raw, where, ("probe",), ctx))
    return tol.parse(raw, where)


def _activity(
    raw: object, where: str, allowed: tuple[str, ...] = ("probe", "action"), ctx: _Ctx = _NONE
) -> Activity:
    raw, where = _deref(raw, where, ctx)
    a = fields.mapping(raw, where)
    kind = a.get("type")
    if kind not in allowed:
        raise ConfigError(f"{where}.type", f"must be {' or '.join(allowed)}, got {kind!r}")
    fields.no_unknown(
        a,
        {
            "type",
            "name",
            "provider",
            "tolerance",
            "pauses",
            "background",
            "controls",
            "weight",
            "impact",
        },
        where,
    )
    weight = a.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError(
            f"{where}.weight", f"must be a number > 0 (the resilience score's), got {weight!r}"
        )
    impact = a.get("impact", False)
    if not isinstance(impact, bool):
        raise ConfigError(f"{where}.impact", f"must be true or false, got {impact!r}")
    if impact and kind != "probe":
        raise ConfigError(f"{where}.impact", "marks a probe whose samples feed the impact metrics")
    background = a.get("background", False)
    if not isinstance(background, bool):
        raise ConfigError(f"{where}.background", f"must be true or false, got {background!r}")
    provider = _provider(a.get("provider"), f"{where}.provider", kind, ctx)
    tolerance = None
    if "tolerance" in a:
        tolerance = _tolerance(a["tolerance"], f"{where}.tolerance", ctx)
    pauses = fields.mapping(a.get("pauses") or {}, f"{where}.pauses")
    fields.no_unknown(pauses, {"before", "after"}, f"{where}.pauses")
    return Activity(
        type=kind,
        name=fields.string(a, "name", where),
        provider=provider,
        tolerance=tolerance,
        pause_before=fields.duration(pauses.get("before", 0), f"{where}.pauses.before"),
        pause_after=fields.duration(pauses.get("after", 0), f"{where}.pauses.after"),
        raw=dict(a),
        weight=float(weight),
        impact=impact,
        background=background,
        controls=_controls(a.get("controls"), f"{where}.controls", ctx),
    )


# ---------------------------------------------------------------- settings


def _ramp(raw: object, where: str) -> tuple[RampStep, ...]:
    r = fields.mapping(raw, where)
    fields.no_unknown(r, {"steps", "hold"}, where)
    hold = fields.duration(r.get("hold", 0), f"{where}.hold")
    steps = r.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(
            f"{where}.steps", "a list of percents (e.g. [1, 5, 10, 25, 50]) is required"
        )
    out: list[RampStep] = []
    for i, s in enumerate(steps):
        w = f"{where}.steps[{i}]"
        if isinstance(s, Mapping):
            fields.no_unknown(s, {"percent", "hold"}, w)
            percent, step_hold = s.get("percent"), fields.duration(s.get("hold", hold), f"{w}.hold")
        else:
            percent, step_hold = s, hold
        if isinstance(percent, str):
            percent = percent.strip().removesuffix("%")
        try:
            value = float(percent)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(w, f"expected a percent, got {percent!r}") from None
        if not 0 < value <= 100:
            raise ConfigError(w, f"must be in (0, 100], got {value:g}")
        if out and value < out[-1].percent:
            raise ConfigError(w, "ramp steps must not decrease")
        out.append(RampStep(value, step_hold))
    return tuple(out)


def _stop_condition(raw: object, where: str) -> StopCondition:
    c = fields.mapping(raw, where)
    fields.no_unknown(c, {"name", "probe", "provider", "tolerance", "for", "interval"}, where)
    name = fields.string(c, "name", where)
    if "probe" in c:
        probe_raw = dict(fields.mapping(c["probe"], f"{where}.probe"))
        probe_raw.setdefault("name", name)
        probe_raw.setdefault("type", "probe")
        probe = _activity(probe_raw, f"{where}.probe", ("probe",))
    else:
        inline = {"type": "probe", "name": name, "provider": c.get("provider")}
        if "tolerance" in c:
            inline["tolerance"] = c["tolerance"]
        probe = _activity(inline, where, ("probe",))
    if probe.tolerance is None:
        raise ConfigError(
            f"{where}.tolerance", "a stop condition needs a tolerance (what healthy is)"
        )
    return StopCondition(
        name=name,
        probe=probe,
        sustain=fields.duration(c.get("for", 0), f"{where}.for"),
        interval=fields.duration(c.get("interval", 5), f"{where}.interval", False),
    )


def _settings(raw: object) -> Settings:
    exts = raw if isinstance(raw, list) else []
    found = [e for e in exts if isinstance(e, Mapping) and e.get("name") == "brownout"]
    if len(found) > 1:
        raise ConfigError("extensions", "only one extension named brownout is allowed")
    if not found:
        return Settings()
    where = "extensions[brownout]"
    b = found[0]
    fields.no_unknown(
        b,
        {
            "name",
            "targets",
            "ramp",
            "stop-conditions",
            "lease-ttl",
            "run-window",
            "on-fault-error",
            "timeline",
        },
        where,
    )
    t = fields.mapping(b.get("targets") or {}, f"{where}.targets")
    fields.no_unknown(
        t, {"selector", "mode", "seed", "max-fleet-percent", "on-unreachable"}, f"{where}.targets"
    )
    seed = t.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{where}.targets.seed", "must be an integer")
    cap = t.get("max-fleet-percent", 100)
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not 0 < cap <= 100:
        raise ConfigError(f"{where}.targets.max-fleet-percent", f"must be in (0, 100], got {cap!r}")
    on_unreachable = t.get("on-unreachable", "skip")
    if on_unreachable not in ("skip", "abort"):
        raise ConfigError(f"{where}.targets.on-unreachable", "must be skip or abort")
    on_fault_error = b.get("on-fault-error", "abort")
    if on_fault_error not in ("abort", "continue"):
        raise ConfigError(
            f"{where}.on-fault-error", f"must be abort or continue, got {on_fault_error!r}"
        )
    ttl = fields.duration(b.get("lease-ttl", 15), f"{where}.lease-ttl", False)
    tl = fields.mapping(b.get("timeline") or {}, f"{where}.timeline")
    fields.no_unknown(tl, {"interval", "recovery"}, f"{where}.timeline")
    interval = fields.duration(tl.get("interval", 5), f"{where}.timeline.interval", False)
    if interval < 0.1:
        raise ConfigError(f"{where}.timeline.interval", f"must be at least 0.1s, got {interval:g}s")
    recovery = fields.duration(tl.get("recovery", 60), f"{where}.timeline.recovery")
    conditions = tuple(
        _stop_condition(c, f"{where}.stop-conditions[{i}]")
        for i, c in enumerate(b.get("stop-conditions") or [])
    )
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.stop-conditions", "names must be unique")
    return Settings(
        selector=parse_selector(t.get("selector"), f"{where}.targets.selector"),
        mode=parse_mode(t.get("mode", "ALL"), f"{where}.targets.mode"),
        seed=seed,
        max_fleet_percent=float(cap),
        on_unreachable=on_unreachable,
        on_fault_error=on_fault_error,
        ramp=_ramp(b["ramp"], f"{where}.ramp") if b.get("ramp") else Settings().ramp,
        stop_conditions=conditions,
        lease_ttl=ttl,
        sample_interval=interval,
        recovery=recovery,
        window=win.parse(b["run-window"], f"{where}.run-window") if b.get("run-window") else None,
    )


def _rollbacks(raw: list[Any], ctx: _Ctx) -> tuple[Activity, ...]:
    out = tuple(_activity(a, f"rollbacks[{i}]", ("action",), ctx) for i, a in enumerate(raw))
    for i, a in enumerate(out):
        if isinstance(a.provider, FaultProvider):
            raise ConfigError(
                f"rollbacks[{i}].provider.type",
                "the controller always reverts faults; rollbacks run http, process or python"
                " actions",
            )
    return out


def _method(raw: list[Any], ctx: _Ctx) -> tuple[Activity, ...]:
    out = tuple(_activity(a, f"method[{i}]", ctx=ctx) for i, a in enumerate(raw))
    for i, a in enumerate(out):
        if isinstance(a.provider, NativeProvider):
            raise ConfigError(
                f"method[{i}].provider.func",
                "brownout run reverts its faults when their duration ends and at the run's"
                " end; put revert_faults in rollbacks",
            )
    return out


HYPOTHESIS_STRATEGIES = (
    "default",
    "before-method-only",
    "after-method-only",
    "during-method-only",
    "continuously",
)


def _runtime(raw: object) -> Runtime:
    r = fields.mapping(raw or {}, "runtime")
    fields.no_unknown(r, {"rollbacks", "hypothesis"}, "runtime")
    rb = fields.mapping(r.get("rollbacks") or {}, "runtime.rollbacks")
    fields.no_unknown(rb, {"strategy"}, "runtime.rollbacks")
    rollbacks = rb.get("strategy", "default")
    if rollbacks not in ("default", "always", "never", "deviated"):
        raise ConfigError(
            "runtime.rollbacks.strategy",
            f"one of default, always, never, deviated; got {rollbacks!r}",
        )
    h = fields.mapping(r.get("hypothesis") or {}, "runtime.hypothesis")
    fields.no_unknown(h, {"strategy", "frequency", "fail-fast"}, "runtime.hypothesis")
    strategy = h.get("strategy", "default")
    if strategy == "continously":  # chaostoolkit accepts its old spelling
        strategy = "continuously"
    if strategy not in HYPOTHESIS_STRATEGIES:
        raise ConfigError(
            "runtime.hypothesis.strategy",
            f"one of {', '.join(HYPOTHESIS_STRATEGIES)}; got {strategy!r}",
        )
    fail_fast = h.get("fail-fast", False)
    if not isinstance(fail_fast, bool):
        raise ConfigError("runtime.hypothesis.fail-fast", "must be true or false")
    return Runtime(
        rollbacks=rollbacks,
        hypothesis=strategy,
        frequency=fields.duration(h.get("frequency", 1), "runtime.hypothesis.frequency", False),
        fail_fast=fail_fast,
    )


def _named(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every activity that has a name, for ref entries (chaoslib looks in the
    hypothesis, the method and the rollbacks)."""
    hypo = doc.get("steady-state-hypothesis")
    probes = hypo.get("probes") if isinstance(hypo, Mapping) else None
    out: dict[str, Mapping[str, Any]] = {}
    for section in (probes, doc.get("method"), doc.get("rollbacks")):
        for a in section if isinstance(section, list) else []:
            if isinstance(a, Mapping) and "ref" not in a and isinstance(a.get("name"), str):
                out.setdefault(a["name"], a)
    return out


# -------------------------------------------------------------------- load


def parse(raw: object, source: str = "") -> Experiment:
    doc = fields.mapping(raw, source or "experiment")
    values = fields.configuration(doc.get("configuration"))
    secrets = fields.secrets(doc.get("secrets"))
    # Secrets are substituted only when a python function is called: until
    # then a ${secret} stays as written, so no journal or log holds its value.
    kept = {k: f"${{{k}}}" for k in fields.flat(secrets)}
    resolved = {
        k: (v if k in ("configuration", "secrets") else fields.substitute(v, {**kept, **values}))
        for k, v in doc.items()
    }
    title = resolved.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ConfigError("title", "an experiment needs a title")
    top = _controls(resolved.get("controls"), "controls", _NONE)
    ctx = _Ctx(values, secrets, _named(resolved), {c.name: c for c in top})
    hypothesis = None
    if resolved.get("steady-state-hypothesis"):
        h = fields.mapping(resolved["steady-state-hypothesis"], "steady-state-hypothesis")
        probes = h.get("probes") or []
        if not isinstance(probes, list):
            raise ConfigError("steady-state-hypothesis.probes", "expected a list")
        parsed = tuple(
            _activity(p, f"steady-state-hypothesis.probes[{i}]", ("probe",), ctx)
            for i, p in enumerate(probes)
        )
        for i, p in enumerate(parsed):
            if p.tolerance is None:
                raise ConfigError(f"steady-state-hypothesis.probes[{i}].tolerance", "required")
        hypothesis = Hypothesis(str(h.get("title", "")), parsed)
    method = resolved.get("method")
    if not isinstance(method, list) or not method:
        raise ConfigError("method", "a non-empty list of activities is required")
    rollbacks = resolved.get("rollbacks") or []
    if not isinstance(rollbacks, list):
        raise ConfigError("rollbacks", "expected a list")
    tags = resolved.get("tags") or []
    return Experiment(
        title=title.strip(),
        description=str(resolved.get("description", "")),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        hypothesis=hypothesis,
        method=_method(method, ctx),
        rollbacks=_rollbacks(rollbacks, ctx),
        settings=_settings(resolved.get("extensions")),
        raw=fields.redacted(doc),
        source=source,
        runtime=_runtime(resolved.get("runtime")),
        controls=top,
        configuration=values,
        secrets=secrets,
    )


def load(path: Path) -> Experiment:
    """Read an experiment from YAML or JSON (JSON is YAML, so one parser reads both)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            str(path), f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    return parse(raw, str(path))
