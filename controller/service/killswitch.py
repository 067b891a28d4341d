"""The kill switch (AWS FIS's safety lever, Gremlin's halt-all).

Engaging it stores it first, so it holds across a restart; then it aborts
every live run (status aborted, reason "kill switch: REASON"), stops renewing
every lease this replica holds (so each agent reverts this replica's faults
by itself within the TTL, however long the fan-out takes and whether or not
it reaches the agent), and sends a latched Halt to every agent at once, which
reverts every fault there, this service's or anyone's, and refuses new ones
until Resume. New runs are refused while it is engaged. Disengaging is
explicit: it resumes the agents and clears the store. The other replicas on
the store follow within a heartbeat (follow): they abort their runs, give up
their leases and halt (or resume) their agents.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from controller.agents.fleet import Fleet, Outcome
from controller.service.runs import RunManager
from controller.store import KillSwitch, ServiceState

log = structlog.get_logger("brownout.killswitch")


def _agents(outcomes: dict[str, Outcome[Any]]) -> dict[str, dict[str, Any]]:
    return {
        a: {"ok": o.ok, "error": o.error, "seconds": round(o.seconds, 4)}
        for a, o in outcomes.items()
    }


class KillSwitchLever:
    def __init__(
        self,
        fleet: Fleet,
        store: ServiceState,
        runs: RunManager,
    ) -> None:
        self._store = store
        self._runs = runs
        # The service's fleet; halts and resumes pass through its urgent
        # slots, so they never wait behind a run's calls.
        self.fleet = fleet
        self._seen: tuple[bool, str] | None = None  # the switch as this replica last acted on it

    def state(self) -> KillSwitch:
        return self._store.kill_switch()

    def engage(self, reason: str, by: str) -> dict[str, Any]:
        t0 = time.monotonic()
        with self.fleet.halting():  # the aborted runs revert after the Halts
            with self._runs.gate:  # no start slips between the store and the aborts
                state = self._store.set_kill_switch(True, reason, by)
                self._seen = (True, state.at)
                aborted = self._runs.abort_all(f"kill switch: {reason}", "kill_switch")
            self._runs.notifier.send("kill_switch", engaged=True, reason=reason, by=by)
            abandoned = self._abandon(reason, by)
            outcomes = self.fleet.halt(latch=True, reason=f"kill switch: {reason} (by {by})")
        seconds = time.monotonic() - t0
        reverted = sum(len(o.value.faults) for o in outcomes.values() if o.value is not None)
        failed = [a for a, o in outcomes.items() if not o.ok]
        log.warning(
            "kill switch engaged",
            reason=reason,
            by=by,
            runs_aborted=aborted,
            leases_abandoned=abandoned,
            faults_reverted=reverted,
            agents_failed=failed,
            seconds=round(seconds, 3),
        )
        return {
            **state.as_dict(),
            "runs_aborted": aborted,
            "leases_abandoned": abandoned,
            "faults_reverted": reverted,
            "agents": _agents(outcomes),
            "agents_failed": failed,
            "seconds": round(seconds, 4),
        }

    def _abandon(self, reason: str, by: str) -> int:
        """The backstop: every lease of this replica stops being renewed, so
        its faults end within a TTL even where the Halt is late or lost."""
        return self.fleet.abandon_leases(f"given up by the kill switch ({reason}, by {by})")

    def disengage(self, by: str) -> dict[str, Any]:
        outcomes = self.fleet.resume()
        failed = [a for a, o in outcomes.items() if not o.ok]
        with self._runs.gate:
            state = self._store.set_kill_switch(False, "", by)
            self._seen = (False, state.at)
        self._runs.notifier.send("kill_switch", engaged=False, reason="disengaged", by=by)
        log.warning("kill switch disengaged", by=by, agents_failed=failed)
        return {**state.as_dict(), "agents": _agents(outcomes), "agents_failed": failed}

    def reassert(self) -> None:
        """At startup: an engaged switch is latched again on every agent (an
        agent that restarted meanwhile forgot its latch)."""
        state = self.state()
        self._seen = (state.engaged, state.at)
        if state.engaged:
            self.fleet.halt(latch=True, reason=f"kill switch: {state.reason} (by {state.by})")

    def follow(self) -> None:
        """Do what another replica did to the switch since this one last acted:
        abort this replica's runs and halt its agents, or resume them."""
        with self.fleet.halting():  # the aborted runs revert after the Halts
            self._follow()

    def _follow(self) -> None:
        with self._runs.gate:  # against this replica's own engage and disengage
            state = self.state()
            seen, self._seen = self._seen, (state.engaged, state.at)
            if seen is None or seen == self._seen:  # nothing to follow (reassert() is the start)
                return
            why = f"kill switch: {state.reason}"
            aborted = self._runs.abort_all(why, "kill_switch") if state.engaged else []
        if not state.engaged:
            failed = [a for a, o in self.fleet.resume().items() if not o.ok]
            log.warning("kill switch disengaged by another replica", by=state.by,
                        agents_failed=failed)  # fmt: skip
            return
        abandoned = self._abandon(state.reason, state.by)
        outcomes = self.fleet.halt(latch=True, reason=f"{why} (by {state.by})")
        log.warning(
            "kill switch engaged by another replica", reason=state.reason, by=state.by,
            runs_aborted=aborted, leases_abandoned=abandoned,
            agents_failed=[a for a, o in outcomes.items() if not o.ok],
        )  # fmt: skip
