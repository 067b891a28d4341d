"""The service's monkey keeper: acts on each monkey's day (controller.monkey
draws it) on real agents, one kill at a time, and keeps the tracker.

One thread wakes every TICK. For each stored monkey, once the day's planning
hour has passed, the day's plan is drawn (and logged once); each slot that is
due, and not older than DEADLINE, is claimed in the store (exactly once,
across replicas and restarts), and then, in order:

- the kill switch and the gates (the monkey's, and the service's);
- the group's back-off after a failed probe;
- never the last healthy member: the group needs two reachable, unhalted
  members where the action's target is present (each agent checks the
  action without making it), and fewer than max-down of them under this
  monkey's faults;
- the victim is drawn among the rest, and the kill is a run of its own on
  that agent alone (leases, journal, revert, report), with the group's probe
  as the steady state before and after.

The tracker row says what happened: skipped (why), started, then killed or
failed, with the process (pid, start time, command line), the gates' answers
and the probe values taken from the run's journal.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from brownout import features
from brownout.v1 import agent_pb2 as pb
from controller.agents.aioclient import AsyncAgentClient
from controller.errors import ConfigError
from controller.experiments import fields, gates
from controller.experiments import journal as jr
from controller.experiments import parse as exp
from controller.experiments.gates import Gates
from controller.experiments.model import FaultProvider
from controller.experiments.records import RunStatus
from controller.monkey import model
from controller.monkey.model import Monkey
from controller.monkey.planning import DayPlan, Slot, plan_day
from controller.schedules.plan import draw
from controller.service.errors import Refused
from controller.service.runs import RunManager
from controller.store import MonkeyKill, Monkeys, ServiceState, now_iso

log = structlog.get_logger("brownout.monkey")

TICK = 1.0
DEADLINE = timedelta(minutes=5)  # a slot missed by more (controller down) is skipped
LEASE_TTL = "5s"  # a stop is resumed this soon after its controller dies
REPLAN = timedelta(seconds=60)  # how stale the day's draw (the fleet's groups) may get


def by(m: Monkey) -> str:
    return f"monkey:{m.name}"


def experiment_doc(m: Monkey, slot: Slot, victim: str, labels: dict[str, str]) -> dict[str, Any]:
    """The kill as an experiment on one agent: the slot's action (its
    ${label_KEY} the victim's labels), and the group's probe as the steady
    state before and after."""
    values = model.label_values(labels)
    raw = {k: v for k, v in m.doc["actions"][slot.action].items() if k != "weight"}
    action = fields.substitute(raw, values)
    doc: dict[str, Any] = {
        "version": "1.0.0",
        "title": f"monkey {m.name}: {slot.group}",
        "description": f"slot {slot.key} on {victim}",
        "method": [
            {
                "type": "action",
                "name": f"monkey-{action['fault']}",
                "provider": {"type": "brownout", **action},
            }
        ],
        "extensions": [{"name": "brownout", "lease-ttl": LEASE_TTL}],
    }
    if "duration" in action:  # a stop (or any fault with a duration) is held that long
        doc["extensions"][0]["ramp"] = {"steps": [100], "hold": action["duration"]}
    if m.doc.get("probe"):
        probe = fields.substitute(m.doc["probe"], values)
        doc["steady-state-hypothesis"] = {"title": f"{slot.group} healthy", "probes": [probe]}
    return doc


class MonkeyKeeper:
    def __init__(
        self,
        monkeys: Monkeys,
        state: ServiceState,
        runs: RunManager,
        replica: str = "",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        service_gates: Gates | None = None,
    ) -> None:
        self.monkeys = monkeys
        self.state = state
        self.runs = runs
        self.replica = replica or "this controller"
        self.gates = service_gates or Gates()
        self._now = now
        self._parsed: dict[str, tuple[str, Monkey]] = {}
        self._logged: set[tuple[str, date]] = set()  # plans logged, by monkey and day
        # The day's draw, as of when (the fleet is asked again every REPLAN, and
        # whenever a slot is due).
        self._plans: dict[tuple[str, date], tuple[datetime, DayPlan, dict[str, str]]] = {}
        self._backoff: dict[tuple[str, str], datetime] = {}  # (monkey, group) -> until
        self._running: dict[str, MonkeyKill] = {}  # run id -> its tracker row
        self._labels: dict[str, dict[str, str]] = {}  # member address -> labels, as last seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="monkeys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.tick()
            except Exception:  # one bad turn must not end the monkeys
                log.exception("monkey turn failed")

    # ----------------------------------------------------------------- plan

    def parsed(self) -> list[Monkey]:
        out = []
        for stored in self.monkeys.all():
            key = json.dumps(stored.doc, sort_keys=True)
            cached = self._parsed.get(stored.name)
            if cached is None or cached[0] != key:
                try:
                    cached = key, model.parse(stored.doc, f"monkey {stored.name}")
                except ConfigError as exc:
                    log.error("monkey unreadable: skipped", monkey=stored.name, error=str(exc))
                    continue
                self._parsed[stored.name] = cached
            out.append(cached[1])
        return out

    def groups(self, m: Monkey) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
        """The monkey's groups (their opted-in members, exceptions left out) from
        the fleet as GetInfo answers now; and why each unusable member is not.
        The members' labels are kept for the kill's ${label_KEY}."""
        members: dict[str, list[str]] = {}
        unusable: dict[str, str] = {}
        for address, st in self.runs.fleet.statuses().items():
            group = m.group_of(st.labels)
            if group is None:
                continue
            self._labels[address] = st.labels
            if not st.reachable:
                unusable[address] = f"unreachable: {st.error}"
            elif st.info is not None and st.info.halted:
                unusable[address] = "halted"
            members.setdefault(group, []).append(address)
        return {g: tuple(sorted(a)) for g, a in members.items()}, unusable

    def plan(self, m: Monkey, day: date) -> tuple[DayPlan, dict[str, str]]:
        groups, unusable = self.groups(m)
        last = {g: date.fromisoformat(d) for g, d in self.monkeys.last_kills(m.name).items()}
        last = {g: d for g, d in last.items() if d < day}  # today's own kills are the slots'
        return plan_day(m, day, groups, last), unusable

    # ----------------------------------------------------------------- act

    def tick(self) -> None:
        now = self._now()
        self._finish(now)
        for m in self.parsed():
            tz = ZoneInfo(m.timezone)
            local = now.astimezone(tz)
            if local.time() < m.planning:
                continue  # the day is drawn at the planning hour
            due = self._due(m, local.date(), now)
            for slot, plan, unusable in due:
                self._act(m, slot, plan, unusable, now)

    def _due(
        self, m: Monkey, day: date, now: datetime
    ) -> list[tuple[Slot, DayPlan, dict[str, str]]]:
        """The day's slots due now and not yet claimed, with the plan (the
        fleet asked again every REPLAN, and whenever a slot is due)."""
        if m.paused:
            return []
        cached = self._plans.get((m.name, day))
        if cached is None or now - cached[0] > REPLAN:
            cached = (now, *self.plan(m, day))
            self._plans = {k: v for k, v in self._plans.items() if k[1] >= day}
            self._plans[(m.name, day)] = cached
        if (m.name, day) not in self._logged:
            self._logged.add((m.name, day))
            log.info("monkey day drawn", monkey=m.name, day=day.isoformat(),
                     closed=cached[1].closed,
                     kills=[f"{s.key}@{s.at.isoformat()}" for s in cached[1].slots])  # fmt: skip
        if not [s for s in cached[1].slots if s.at <= now]:
            return []
        seen = {k.slot for k in self.monkeys.kills(m.name, 1000) if k.day == day.isoformat()}
        if not [s for s in cached[1].slots if s.at <= now and s.key not in seen]:
            return []
        if cached[0] != now:  # a slot is due: the members as they are now
            cached = (now, *self.plan(m, day))
            self._plans[(m.name, day)] = cached
        _, plan, unusable = cached
        return [(s, plan, unusable) for s in plan.slots
                if s.at <= now and s.key not in seen]  # fmt: skip

    def _act(
        self, m: Monkey, slot: Slot, plan: DayPlan, unusable: dict[str, str], now: datetime
    ) -> None:
        kill = MonkeyKill(m.name, slot.key, slot.group, slot.day.isoformat(), slot.at.isoformat(),
                          now_iso(), "claimed", f"claimed by {self.replica}",
                          action=m.actions[slot.action].describe())  # fmt: skip
        if not self.monkeys.claim(kill):
            return  # another replica (or this one before a restart) has it
        if now - slot.at > DEADLINE:
            self._skip(kill, "missed", f"missed: {(now - slot.at).total_seconds():.0f}s late")
            return
        ks = self.state.kill_switch()
        if ks.engaged:
            self._skip(kill, "kill_switch", f"the kill switch is engaged ({ks.reason})")
            return
        until = self._backoff.get((m.name, slot.group))
        if until is not None and now < until:
            self._skip(kill, "probe", f"backing off after a failed probe until {until.isoformat()}")
            return
        members = next(g.members for g in plan.groups if g.group == slot.group)
        down = {a for r in self.state.live_runs() if r.by == by(m) for a in r.agents}
        unusable = {**unusable, **self._unreachable_target(
            m, slot, [a for a in members if a not in unusable and a not in down])}  # fmt: skip
        healthy = [a for a in members if a not in unusable]
        busy = [a for a in healthy if a in down]
        free = [a for a in healthy if a not in down]
        if len(healthy) < 2:
            why = (
                f"never the last healthy member: {len(healthy)} of {len(members)} healthy"
                f" ({'; '.join(f'{a} {unusable[a]}' for a in members if a in unusable)})"
            )
            self._skip(kill, "last_member", why)  # fmt: skip
            return
        if len(busy) >= m.max_down or not free:
            why = f"{len(busy)} member(s) already down (max-down {m.max_down})"
            self._skip(kill, "max_down", why)
            return
        victim = free[int(draw(m.name, slot.at, f"{slot.key}|victim") * len(free))]
        planned = {"monkey": m.name, "group": slot.group, "slot": slot.key, "agent": victim,
                   "action": kill.action, "by": by(m)}  # fmt: skip
        blocked = gates.check(m.gates.merged(self.gates), planned)
        answers = {"gates": "passed"}
        if blocked is not None:
            self._skip(kill, f"gate_{blocked.gate}", str(blocked))
            return
        try:
            doc = experiment_doc(m, slot, victim, self._labels.get(victim, {}))
            experiment = exp.parse(doc, f"monkey {m.name}")
            run = self.runs.start(experiment, by(m), only=[victim])
        except (ConfigError, Refused) as exc:
            self._skip(kill, "refused", str(exc))
            return
        started = _with(kill, outcome="started", detail=f"run {run.run_id} on {victim}",
                        agent=victim, run_id=run.run_id, record=answers)  # fmt: skip
        self.monkeys.update(started)
        self._running[run.run_id] = started
        log.warning("monkey kill started", monkey=m.name, group=slot.group, slot=slot.key,
                    agent=victim, run_id=run.run_id)  # fmt: skip

    def _unreachable_target(self, m: Monkey, slot: Slot, members: list[str]) -> dict[str, str]:
        """Why each of members could not take the slot's action now (the target
        process absent, already held, refused by the agent's safety rules), as
        its own agent answers a validate-only inject. Agents too old to check
        are taken as they are."""
        providers: dict[str, FaultProvider] = {}
        bad: dict[str, str] = {}
        for a in members:
            info = self.runs.fleet.infos.get(a)
            if info is None or features.VALIDATE_ONLY not in info.features:
                continue
            doc = experiment_doc(m, slot, a, self._labels.get(a, {}))
            try:
                provider = exp.parse(doc, f"monkey {m.name}").fault_actions[0].provider
            except ConfigError as exc:  # e.g. a ${label_KEY} this member lacks
                bad[a] = f"action: {exc}"
                continue
            assert isinstance(provider, FaultProvider)
            providers[a] = provider

        async def check(c: AsyncAgentClient) -> pb.Fault:
            p = providers[c.address]
            return await c.inject("", p.spec, p.duration or 1.0, p.target, validate_only=True)

        outcomes = self.runs.fleet.map(check, providers) if providers else {}
        return bad | {a: f"target: {o.error}" for a, o in outcomes.items() if o.value is None}

    def _skip(self, kill: MonkeyKill, kind: str, why: str) -> None:
        self.monkeys.update(_with(kill, outcome="skipped", detail=why, record={"reason": kind}))
        self.runs.metrics.runs_skipped_total.labels(f"monkey_{kind}").inc()
        log.info("monkey kill skipped", monkey=kill.monkey, slot=kill.slot, reason=kind, why=why)

    def _finish(self, now: datetime) -> None:
        """Runs of kills that ended: their tracker rows say how."""
        for run_id, kill in list(self._running.items()):
            active = self.runs.get(run_id)
            if active is not None and not active.done.is_set():
                continue
            del self._running[run_id]
            journal = active.journal() if active is not None else {}
            outcome, detail, record = _outcome(journal, kill)
            parsed = self._parsed.get(kill.monkey)
            if probe_failed(journal) and parsed is not None:  # the group waits (Service Fabric)
                until = now + timedelta(seconds=parsed[1].probe_backoff)
                self._backoff[(kill.monkey, kill.group)] = until
                outcome, detail = "skipped", f"probe failed: {detail}; back off until {until}"
            self.monkeys.update(_with(kill, outcome=outcome, detail=detail, record=record))


def _with(kill: MonkeyKill, **changes: Any) -> MonkeyKill:
    fields = {**kill.__dict__, "at": now_iso(), **changes}
    return MonkeyKill(**fields)


def _outcome(journal: dict[str, Any], kill: MonkeyKill) -> tuple[str, str, dict[str, Any]]:
    """killed or failed, why, and what the journal says of the process and probes."""
    if not journal:
        return "failed", "the run's journal is gone (the controller restarted)", {}
    b = jr.brownout(journal)
    faults = [f for a in (b.get("agents") or {}).values() for f in a.get("faults", [])]
    applied = faults[0].get("applied", {}) if faults else {}
    states = journal.get("steady_states") or {}
    record = {
        **(kill.record or {}),
        "process": applied,
        "probes_before": states.get("before"),
        "probes_after": states.get("after"),
        "status": journal.get("status"),
    }
    if journal.get("status") == RunStatus.COMPLETED:
        hit = applied.get("signalled") or applied.get("stopped") or ""
        return "killed", f"run {kill.run_id}: pid(s) {hit or '-'}", record
    return "failed", str(b.get("reason") or journal.get("status") or "failed"), record


def probe_failed(journal: dict[str, Any]) -> bool:
    before = (journal.get("steady_states") or {}).get("before")
    return before is not None and not before.get("steady_state_met", True)
