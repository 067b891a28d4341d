"""One Brownout session per `chaos run`: the agents the experiment's
configuration names, one lease on each target (kept alive on the fleet's loop
thread, so `chaos` killed means every fault reverted by the agents within the
TTL), and the faults injected under them.

The configuration keys (all optional but one source of agents):

    brownout_agents       address list (or one comma-separated string)
    brownout_inventory    an inventory file, as `brownout --inventory`
    brownout_dns          a DNS name (or a list), as `brownout --dns`
    brownout_selector     label selector, as an experiment's targets.selector
    brownout_mode         ALL, COUNT:N or PERCENT:P (default ALL)
    brownout_seed         for a repeatable choice of targets
    brownout_lease_ttl    seconds (default 15)
    brownout_timeout      seconds per call (default 5)
    brownout_tls_ca, brownout_tls_cert, brownout_tls_key, brownout_tls_server_name
                          mutual TLS (else BROWNOUT_TLS_* from the environment)
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from brownout.errors import ConfigError
from brownout.units import parse_duration
from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient, retrying
from controller.agents.fleet import Fleet
from controller.agents.tls import ClientTls, from_values
from controller.experiments.selection import (
    Mode,
    Selector,
    new_seed,
    parse_mode,
    parse_selector,
    select,
)

KEYS = (
    "brownout_agents",
    "brownout_inventory",
    "brownout_dns",
    "brownout_selector",
    "brownout_mode",
    "brownout_seed",
    "brownout_lease_ttl",
    "brownout_timeout",
    "brownout_tls_ca",
    "brownout_tls_cert",
    "brownout_tls_key",
    "brownout_tls_server_name",
)
LIVE = (pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE, pb.FAULT_STATE_REVERTING)


def _list(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(x.strip() for x in raw.split(",") if x.strip())
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    raise ConfigError(where, "a list of strings, or one comma-separated string")


def _seconds(raw: object, where: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = parse_duration(raw) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(where, f"expected seconds or a duration like 15s: {exc}") from None
    if value <= 0:
        raise ConfigError(where, f"must be > 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    agents: tuple[str, ...] = ()
    inventory: Path | None = None
    dns: tuple[str, ...] = ()
    selector: Selector = field(default_factory=Selector)
    mode: Mode = field(default_factory=lambda: Mode("all"))
    seed: int | None = None
    lease_ttl: float = 15.0
    timeout: float = 5.0
    tls: ClientTls | None = None

    @staticmethod
    def read(configuration: Mapping[str, Any] | None) -> Settings:
        """From the experiment's configuration; a ConfigError names the key."""
        c = dict(configuration or {})
        where = "configuration."
        agents = _list(c.get("brownout_agents"), f"{where}brownout_agents")
        dns = _list(c.get("brownout_dns"), f"{where}brownout_dns")
        path = c.get("brownout_inventory")
        if not (agents or dns or path):
            raise ConfigError(
                "configuration",
                "name the agents: brownout_agents, brownout_inventory or brownout_dns",
            )
        seed = c.get("brownout_seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"{where}brownout_seed", "must be an integer")
        try:
            tls = from_values(
                c.get("brownout_tls_ca"),
                c.get("brownout_tls_cert"),
                c.get("brownout_tls_key"),
                str(c.get("brownout_tls_server_name") or ""),
            )
        except ValueError as exc:
            raise ConfigError(f"{where}brownout_tls_*", str(exc)) from None
        return Settings(
            agents=agents,
            inventory=Path(path) if path else None,
            dns=dns,
            selector=parse_selector(c.get("brownout_selector"), f"{where}brownout_selector"),
            mode=parse_mode(c.get("brownout_mode", "ALL"), f"{where}brownout_mode"),
            seed=seed,
            lease_ttl=_seconds(c.get("brownout_lease_ttl"), f"{where}brownout_lease_ttl", 15.0),
            timeout=_seconds(c.get("brownout_timeout"), f"{where}brownout_timeout", 5.0),
            tls=tls,
        )


class BrownoutError(Exception):
    """An agent refused, or could not be reached; the message says which and why."""


def fault_dict(f: pb.Fault) -> dict[str, Any]:
    return json_format.MessageToDict(f, preserving_proto_field_name=True)


class Session:
    def __init__(self, settings: Settings, holder: str) -> None:
        self.settings = settings
        self.holder = holder
        refs = inventory.build(settings.inventory, settings.dns, settings.agents)
        self.fleet = Fleet(refs, timeout=settings.timeout, tls=settings.tls)
        self.targets: list[str] | None = None
        self.faults: dict[str, list[str]] = {}  # agent -> ids of the faults injected here
        self.lock = threading.RLock()
        self.injections = 0

    # ------------------------------------------------------------ targets

    def select(self) -> list[str]:
        """The targets, chosen once per session (every action hits the same agents)."""
        with self.lock:
            if self.targets is not None:
                return self.targets
            s = self.settings
            statuses = self.fleet.statuses()
            skipped = {a: st.error for a, st in statuses.items() if not st.reachable}
            eligible = [
                a for a, st in statuses.items() if st.reachable and s.selector.matches(st.labels)
            ]
            seed = s.seed if s.seed is not None else new_seed()
            chosen = select(eligible, s.mode, seed, len(statuses), 100.0, s.selector.text)
            if not chosen.targets:
                why = "; ".join(f"{a}: {e}" for a, e in skipped.items()) or "none matched"
                raise BrownoutError(
                    f"no agent matches selector {s.selector.text or '(all)'!r} of"
                    f" {len(statuses)} agent(s): {why}"
                )
            self.targets = chosen.targets
            return self.targets

    # ------------------------------------------------------------- leases

    def hold(self) -> dict[str, str]:
        """A lease on every target (once), kept alive at TTL/3 until released."""
        with self.lock:
            missing = [a for a in self.select() if a not in self.fleet.keepers]
            if missing:
                got = self.fleet.acquire_leases(missing, self.holder, self.settings.lease_ttl)
                refused = {a: o.error for a, o in got.items() if o.value is None}
                if refused:
                    why = "; ".join(f"{a}: {e}" for a, e in refused.items())
                    raise BrownoutError(f"lease refused: {why}")
            lost = self.fleet.lost()
            if lost:
                why = "; ".join(f"{a}: {r}" for a, r in lost.items())
                raise BrownoutError(f"lease lost (the agents reverted its faults): {why}")
            return dict(self.fleet.lease_ids())

    # ------------------------------------------------------------- faults

    def inject(
        self, spec: pb.FaultSpec, target: pb.Target, duration: float
    ) -> dict[str, dict[str, Any]]:
        leases = self.hold()
        with self.lock:
            self.injections += 1
            request = f"{self.holder}/{self.injections}"

        async def call(c: AsyncAgentClient) -> pb.Fault:
            return await retrying(
                lambda: c.inject(leases[c.address], spec, duration, target, request)
            )

        out: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        for a, o in self.fleet.map(call, list(leases)).items():
            if o.value is None:
                errors.append(f"{a}: {o.error}")
                continue
            with self.lock:
                self.faults.setdefault(a, []).append(o.value.id)
            out[a] = fault_dict(o.value)
        if errors:
            raise BrownoutError(f"inject failed on {len(errors)} agent(s): {'; '.join(errors)}")
        return out

    def revert(self) -> dict[str, list[dict[str, Any]]]:
        """Revert every fault this session injected, then release its leases
        (idempotent: a second call finds nothing left to do)."""
        with self.lock:
            faults, self.faults = self.faults, {}
        out: dict[str, list[dict[str, Any]]] = {}

        async def undo(c: AsyncAgentClient) -> list[pb.Fault]:
            done = []
            for fault_id in faults.get(c.address, []):
                done.append(await retrying(partial(c.revert, fault_id)))
            return done

        for a, o in self.fleet.map(undo, list(faults)).items():
            out[a] = [fault_dict(f) for f in o.value or []]
            if o.value is None:
                out[a] = [{"error": o.error}]
        for a in list(self.fleet.keepers):
            with contextlib.suppress(Exception):  # the lease ends by TTL anyway
                self.fleet.loop.run(self.fleet.release(a))
            self.fleet.keepers.pop(a, None)
        return out

    def live(self) -> dict[str, list[dict[str, Any]]]:
        async def listed(c: AsyncAgentClient) -> list[pb.Fault]:
            return await c.list_faults(states=list(LIVE))

        return {
            a: [fault_dict(f) for f in o.value] if o.value is not None else [{"error": o.error}]
            for a, o in self.fleet.map(listed).items()
        }


_lock = threading.Lock()
_session: Session | None = None


def holder() -> str:
    return f"chaostoolkit:{getpass.getuser()}@{socket.gethostname()} pid={os.getpid()}"


def current(configuration: Mapping[str, Any] | None) -> Session:
    """The session of this `chaos run`, made on first use."""
    global _session
    with _lock:
        if _session is None:
            _session = Session(Settings.read(configuration), holder())
        return _session


def end() -> dict[str, list[dict[str, Any]]]:
    """Revert and release everything, close the channels. Safe to call twice."""
    global _session
    with _lock:
        s, _session = _session, None
    if s is None:
        return {}
    try:
        return s.revert()
    finally:
        s.fleet.close()


# A last resort when chaos exits without the control (no control declared, or
# an exception past it): the faults go now rather than at the lease's TTL.
atexit.register(end)
