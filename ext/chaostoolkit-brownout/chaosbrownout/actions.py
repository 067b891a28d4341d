"""Chaos Toolkit actions: inject a fault on the agents the configuration names,
revert this run's faults, halt the agents (the kill switch).

The arguments are those of `brownout inject KIND` and of a Brownout
experiment's `arguments:` mapping, read by the same code (brownout.faultspecs).
`brownout run` recognises `inject_fault` and runs it natively, with its fleet,
ramp and leases; this module is what `chaos run` calls.
"""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed, InvalidActivity
from chaoslib.types import Configuration, Secrets
from google.protobuf import json_format

from brownout import faultspecs
from brownout.errors import ConfigError
from brownout.units import parse_duration
from chaosbrownout import session

__all__ = ["halt", "inject_fault", "revert_faults"]


def inject_fault(
    kind: str,
    duration: str | float,
    arguments: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, dict[str, Any]]:
    """Inject one fault of `kind` (cpu, memory, disk, io, netem, bandwidth,
    partition, dns, clock, process, pause) on every selected agent, for
    `duration` (seconds or 30s, 5m), under this run's lease on each agent.
    Give `arguments` as for `brownout inject` (e.g. {cores: 1, load: 50}), or
    `spec` as the FaultSpec's proto fields. Answers each agent's fault."""
    try:
        built, aim = faultspecs.fault(kind, arguments, spec, target, "arguments")
        seconds = parse_duration(duration) if isinstance(duration, str) else float(duration)
    except (ConfigError, ValueError) as exc:
        raise InvalidActivity(f"inject_fault: {exc}") from None
    if seconds <= 0:
        raise InvalidActivity(f"inject_fault: duration must be > 0, got {duration!r}")
    try:
        return session.current(configuration).inject(built, aim, seconds)
    except ConfigError as exc:
        raise InvalidActivity(str(exc)) from None
    except session.BrownoutError as exc:
        raise ActivityFailed(str(exc)) from None


def revert_faults(
    configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, list[dict[str, Any]]]:
    """Revert every fault this run injected and release its leases (each
    agent's answer). Idempotent; the control does it too, whatever happens."""
    return session.end()


def halt(
    latch: bool = False,
    reason: str = "chaos run: halt action",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Halt every configured agent: revert all its faults, whoever injected
    them; with `latch`, refuse new ones until `brownout resume`."""
    try:
        s = session.current(configuration)
    except ConfigError as exc:
        raise InvalidActivity(str(exc)) from None
    out = s.fleet.halt(latch, reason)
    failed = {a: o.error for a, o in out.items() if o.value is None}
    if failed:
        raise ActivityFailed(f"halt failed: {failed}")
    return {a: json_format.MessageToDict(o.value) for a, o in out.items() if o.value}
