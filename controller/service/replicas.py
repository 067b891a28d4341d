"""Several `brownout serve` replicas on one store (PostgreSQL), or one on
SQLite: each heartbeats itself and its live runs into the store, with the
runs' journals as they stand, once a BEAT. On each beat it also

- aborts the runs another replica asked it to (a schedule's Replace);
- follows the kill switch another replica engaged or disengaged;
- takes over the runs of a replica that is gone, and marks them interrupted:
  one on this host whose process has ended at once, any other when its
  heartbeat is older than the replica timeout (its agents have reverted the
  faults by lease long before: the lease TTL is seconds);
- aborts its own runs when it could not heartbeat for half the timeout, so
  that no run goes on that another replica is about to call interrupted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import socket
import threading
import time

import psutil
import structlog

from controller.service.killswitch import KillSwitchLever
from controller.service.recovery import ENDED, SILENT, interrupt
from controller.service.runs import RunManager
from controller.store import GameDays, History, Replica, ServiceState, now_iso

log = structlog.get_logger("brownout.replicas")

BEAT = 1.0
TIMEOUT = 10.0  # the default replica timeout (serve --replica-timeout)
FORGET = 3600.0  # a lost replica stays listed (and counted lost) this long


def identity() -> Replica:
    """This process: HOST/PID/NONCE (the nonce tells apart two lives of one pid)."""
    host, pid = socket.gethostname(), os.getpid()
    return Replica(f"{host}/{pid}/{secrets.token_hex(3)}", host, pid, now_iso())


def dead(replica: str, me: Replica) -> bool:
    """Surely gone: a replica of this host whose process is not running (or is
    this one, in an earlier life), or a run of a release before replicas."""
    if not replica:
        return True
    host, _, rest = replica.partition("/")
    pid = rest.partition("/")[0]
    if host != me.host or not pid.isdigit() or replica == me.replica:
        return False
    return int(pid) == me.pid or not psutil.pid_exists(int(pid))


class ReplicaSync:
    def __init__(
        self,
        me: Replica,
        state: ServiceState,
        history: History,
        runs: RunManager,
        lever: KillSwitchLever,
        timeout: float = TIMEOUT,
        gamedays: GameDays | None = None,
    ) -> None:
        self.me = me
        self.gamedays = gamedays
        self.state = state
        self.history = history
        self.runs = runs
        self.lever = lever
        self.timeout = timeout
        self._last_beat = time.monotonic()
        self._sent: dict[str, str] = {}  # the journals in the store, by run: rewritten on change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.beat()  # registered before the first run or occurrence
        self._thread = threading.Thread(target=self._loop, name="replica-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """At a clean shutdown, once its runs have drained: forgotten at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.state.replica_gone(self.me.replica)
        except Exception:  # the store is gone too: the others age it out
            log.warning("could not deregister the replica", replica=self.me.replica)

    def _loop(self) -> None:
        while not self._stop.wait(BEAT):
            try:
                self.turn()
            except Exception:  # one bad turn must not end the heartbeats
                log.exception("replica sync turn failed", replica=self.me.replica)

    def turn(self) -> None:
        if not self.beat():
            return
        self.lever.follow()
        listed = self.state.replicas()
        self.take_over(listed)
        lost = [r for r in listed if r.replica != self.me.replica and r.age > self.timeout]
        for r in lost:
            if r.age > FORGET:
                self.state.replica_gone(r.replica, FORGET)
        self.runs.metrics.replicas.labels("live").set(len(listed) - len(lost))
        self.runs.metrics.replicas.labels("lost").set(len(lost))

    def beat(self) -> bool:
        """Heartbeat this replica and its runs; False if the store did not answer."""
        journals = self.runs.fleet.loop.run(self._journals(), timeout=10)
        changed = {k: (v if self._sent.get(k) != v else None) for k, v in journals.items()}
        try:
            asks = self.state.replica_beat(self.me, changed)
        except Exception as exc:
            self.runs.metrics.store_heartbeat_failures_total.inc()
            silent = time.monotonic() - self._last_beat
            log.error("replica heartbeat failed", error=str(exc), silent_s=round(silent, 1))
            if silent > self.timeout / 2:
                why = (
                    f"lost the store for {silent:.0f}s: after {self.timeout:g}s another replica"
                    " would mark this run interrupted, so it is aborted here first"
                )
                self.runs.abort_all(why, "store_lost")
            return False
        self._last_beat = time.monotonic()
        self._sent = journals
        for run_id, reason in asks:
            if self.runs.abort(run_id, reason, "replica"):
                log.warning("run aborted at another replica's request", run_id=run_id,
                            reason=reason)  # fmt: skip
        return True

    async def _journals(self) -> dict[str, str]:
        # On the fleet's loop, where the runs change their journals.
        await asyncio.sleep(0)
        return {r.run_id: json.dumps(r.journal(), default=str) for r in self.runs.active()}

    def _gone(self, replica: str, ages: dict[str, float]) -> str:
        """Why replica (not this one) is gone, or '' if it may still be alive."""
        if replica == self.me.replica:
            return ""
        if dead(replica, self.me):
            return f"its controller ({replica or 'of an earlier release'}) ended"
        age = ages.get(replica)
        if age is None or age > self.timeout:
            return f"its controller ({replica}) is silent: " + (
                "no heartbeat on record" if age is None else f"{age:.0f}s without one"
            )
        return ""

    def _take_gamedays(self, ages: dict[str, float]) -> None:
        """A game day whose controller is gone ends interrupted: its scenarios
        left say so (its running run is taken over like any run)."""
        if self.gamedays is None:
            return
        for g in self.gamedays.all(100):
            why = self._gone(g.replica, ages) if g.state in ("running", "paused") else ""
            if not why:
                continue
            reason = f"interrupted: {why}; marked by {self.me.replica}"
            scenarios = [
                {**s, "state": "interrupted", "reason": reason}
                if s["state"] in ("waiting", "running") else s
                for s in g.scenarios
            ]  # fmt: skip
            self.gamedays.put(dataclasses.replace(g, state="interrupted", ended=now_iso(),
                                                  scenarios=scenarios))  # fmt: skip
            log.warning("game day cut off by a lost controller marked interrupted",
                        gameday=g.id, replica=g.replica, by=self.me.replica)  # fmt: skip

    def take_over(self, listed: list[Replica] | None = None) -> list[str]:
        """Mark interrupted the runs of replicas that are gone (as `listed`, or
        the store says now); the run ids. Taking a run is one conditional
        update, so one replica wins it."""
        ages = {r.replica: r.age for r in (self.state.replicas() if listed is None else listed)}
        self._take_gamedays(ages)
        done = []
        for live in self.state.live_runs():
            if live.replica == self.me.replica:
                continue
            if dead(live.replica, self.me):
                was = live.replica or "of an earlier release"
                reason = ENDED.format(replica=was, me=self.me.replica, at="{at}")
                taken = self.state.take_run(live, self.me.replica, None)
            elif ages.get(live.replica, float("inf")) > self.timeout:
                age = ages.get(live.replica)
                silent = "no heartbeat on record" if age is None else f"{age:.0f}s without one"
                reason = SILENT.format(replica=live.replica, silent=silent, me=self.me.replica,
                                       at="{at}")  # fmt: skip
                taken = self.state.take_run(live, self.me.replica, self.timeout)
            else:
                continue
            if not taken:
                continue  # another replica took it, or it beat just now
            interrupt(live, self.history, self.runs.fleet, reason, self.runs.data_dir / "journals")
            self.state.run_ended(live.run_id)
            self.runs.metrics.runs_taken_over_total.inc()
            log.warning("run cut off by a lost replica marked interrupted", run_id=live.run_id,
                        replica=live.replica, by=self.me.replica)  # fmt: skip
            done.append(live.run_id)
        return done
