"""What the controller keeps, as values, whichever database holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Run:
    """One finished (or cut-off) run in the history."""

    run_id: str
    title: str
    status: str
    deviated: bool
    reason: str
    started: str
    ended: str | None
    duration: float | None
    targets: int
    journal_path: str


@dataclass(frozen=True)
class KillSwitch:
    engaged: bool
    reason: str = ""
    by: str = ""
    at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"engaged": self.engaged, "reason": self.reason, "by": self.by, "at": self.at}


@dataclass(frozen=True)
class LiveRun:
    """A run a service replica is driving; one whose replica stopped
    heartbeating it was cut off."""

    run_id: str
    title: str
    journal_path: str
    by: str
    started: str
    agents: list[str]
    replica: str = ""
    heartbeat: float = 0.0  # the database's clock, epoch seconds
    journal: str = ""  # the journal as of the last heartbeat (JSON), for another replica
    abort_reason: str = ""  # another replica asked its replica to abort it

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "title": self.title, "by": self.by,
                "started": self.started, "replica": self.replica}  # fmt: skip


@dataclass(frozen=True)
class Replica:
    """One `brownout serve` process on the store, as it last reported itself."""

    replica: str
    host: str
    pid: int
    started: str
    heartbeat: float = 0.0  # the database's clock, epoch seconds
    age: float = 0.0  # seconds since that heartbeat, by the same clock

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StoredGameDay:
    """A game day as held: its plan, state (running, paused, ended, aborted)
    and each scenario's outcome (JSON: state, run id, verdicts)."""

    id: str
    title: str
    plan: dict[str, Any]
    state: str
    by: str
    started: str
    ended: str
    scenarios: list[dict[str, Any]]
    notes: list[dict[str, Any]] = field(default_factory=list)  # the scribe's, between runs
    replica: str = ""  # the controller driving it

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StoredSchedule:
    name: str
    doc: dict[str, Any]
    source: str  # "api" or the file it was declared in
    by: str
    at: str


@dataclass(frozen=True)
class ScheduledOccurrence:
    """What became of one occurrence of a schedule: started (run_id) or skipped."""

    schedule: str
    due: str
    at: str
    outcome: str  # "started" or "skipped"
    kind: str  # for a skip: paused, kill_switch, blackout, window, max_runs, running, missed, ...
    detail: str  # the reason, for people; for a start, why this experiment was picked
    run_id: str = ""
    experiment: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StoredExperiment:
    name: str
    title: str
    doc: dict[str, Any]
    by: str
    at: str

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "by": self.by, "at": self.at}


@dataclass(frozen=True)
class MonkeyKill:
    """The tracker's record of one planned kill slot: claimed, then killed,
    skipped (with why) or failed; `record` holds the process, the gates'
    answers and the probe values (JSON)."""

    monkey: str
    slot: str  # DAY/GROUP/INDEX
    group: str
    day: str
    due: str
    at: str
    outcome: str  # claimed, started, killed, skipped, failed
    detail: str
    agent: str = ""
    action: str = ""
    run_id: str = ""
    record: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "record": self.record or {}}
