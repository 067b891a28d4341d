"""The fault manager's state machine, journal ordering and lease expiry.

The injector here is an in-memory one: this tests the manager's logic, not
the kernel (the host tier does that with real workers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from agent.api.convert import ProtoCodec, inject_request
from agent.core import table as table_module
from agent.core.clock import FakeClock
from agent.core.errors import ApplyError, FailedPrecondition, InvalidArgument, NotFound
from agent.core.injector import Applied, Capability, Checkpoint, RequestContext
from agent.core.journal import Journal
from agent.core.limits import Limits
from agent.core.manager import FaultManager
from agent.core.metrics import Metrics
from agent.core.model import EndReason, Fault, State
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import wait_for

pytestmark = pytest.mark.unit


class MemoryInjector:
    """Applies faults to a dict; can be told to fail."""

    kind = "cpu"
    survives_reboot = False

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.world: dict[str, float] = {}
        self.fail_apply = False
        self.fail_revert = 0  # number of reverts to fail
        self.journal_seen_at_apply: list[str] = []
        self.final_undo_extra: dict[str, Any] = {}  # added after the last checkpoint

    def probe(self) -> Capability:
        return Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> float:
        assert isinstance(spec, pb.CpuSpec)
        if spec.load_percent <= 0:
            raise InvalidArgument("cpu.load_percent", "must be > 0")
        return spec.load_percent

    def apply(self, fault_id: str, plan: Any, checkpoint: Checkpoint) -> Applied:
        self.journal_seen_at_apply = self.journal.fault_ids()
        checkpoint({"key": fault_id})
        self.world[fault_id] = plan
        if self.fail_apply:
            raise OSError("kernel said no")
        return Applied({"key": fault_id, **self.final_undo_extra}, {"load": str(plan)})

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        if self.fail_revert:
            self.fail_revert -= 1
            raise OSError("busy")
        self.world.pop(fault_id, None)

    def sweep(self) -> list[str]:
        return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def setup(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[FaultManager, MemoryInjector]]:
    journal = Journal(tmp_path)
    inj = MemoryInjector(journal)
    mgr = FaultManager(
        {"cpu": inj}, journal, clock, Limits(min_lease_ttl=1), Metrics(), ProtoCodec()
    )
    mgr.start(run_scheduler=False)
    yield mgr, inj
    mgr.shutdown()


def spec(load: float = 50) -> pb.FaultSpec:
    return pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=load))


def secs(n: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(n * 1e9))
    return d


def ttl(n: float) -> tuple[int, int]:
    d = secs(n)
    return d.seconds, d.nanos


def inject(
    mgr: FaultManager, lease_id: str, spec: pb.FaultSpec, duration: Duration, request_id: str = ""
) -> Fault:
    """Through the API's conversion, as InjectFault does."""
    req = pb.InjectFaultRequest(
        lease_id=lease_id, spec=spec, duration=duration, target=pb.Target(), request_id=request_id
    )
    return mgr.inject(inject_request(req, mgr.kinds, caller="test", caller_peer=""))


def test_an_undo_record_that_changed_after_its_checkpoint_is_journaled_again(
    setup: tuple[FaultManager, MemoryInjector],
) -> None:
    mgr, inj = setup
    inj.final_undo_extra = {"pids": [7]}
    lease = mgr.acquire_lease("t", ttl(10))
    fault = inject(mgr, lease.id, spec(), secs(60))
    record = json.loads((mgr._s.journal.dir / f"{fault.id}.json").read_text())
    assert record["phase"] == "applied" and record["undo"] == {"key": fault.id, "pids": [7]}


def test_intent_is_journaled_before_apply_and_forgotten_after_revert(
    setup: tuple[FaultManager, MemoryInjector],
) -> None:
    mgr, inj = setup
    lease = mgr.acquire_lease("t", ttl(10))
    fault = inject(mgr, lease.id, spec(), secs(60))
    assert inj.journal_seen_at_apply == [fault.id]
    record = json.loads((mgr._s.journal.dir / f"{fault.id}.json").read_text())
    # The last checkpoint already holds the final undo record: no further write.
    assert record["phase"] == "applying" and record["undo"] == {"key": fault.id}
    assert fault.state == State.ACTIVE and inj.world == {fault.id: 50}
    reverted = mgr.revert(fault.id, EndReason.CLIENT_REVERT)
    assert reverted.state == State.REVERTED and reverted.end_reason == EndReason.CLIENT_REVERT
    assert inj.world == {} and mgr.journal_ids() == []


def test_failed_apply_rolls_back_and_leaves_no_record(
    setup: tuple[FaultManager, MemoryInjector],
) -> None:
    mgr, inj = setup
    inj.fail_apply = True
    lease = mgr.acquire_lease("t", ttl(10))
    with pytest.raises(ApplyError, match="kernel said no; the partial change was rolled back"):
        inject(mgr, lease.id, spec(), secs(60))
    (fault,) = mgr.list_faults()
    assert fault.state == State.FAILED and fault.end_reason == EndReason.APPLY_FAILED
    assert inj.world == {} and mgr.journal_ids() == []


def test_failed_revert_stays_visible_and_is_retried_until_it_succeeds(
    setup: tuple[FaultManager, MemoryInjector],
) -> None:
    mgr, inj = setup
    lease = mgr.acquire_lease("t", ttl(10))
    fault = inject(mgr, lease.id, spec(), secs(60))
    inj.fail_revert = 2
    after = mgr.revert(fault.id, EndReason.CLIENT_REVERT)
    assert after.state == State.REVERT_FAILED and "busy" in after.error
    assert mgr.journal_ids() == [fault.id]  # still owed a revert
    assert wait_for(lambda: mgr.get(fault.id).state == State.REVERTED, 10)
    final = mgr.get(fault.id)
    assert final.revert_attempts == 2 and final.end_reason == EndReason.CLIENT_REVERT
    assert inj.world == {} and mgr.journal_ids() == []


def test_lease_expiry_reverts_its_faults_with_the_reason(
    setup: tuple[FaultManager, MemoryInjector], clock: FakeClock
) -> None:
    mgr, _inj = setup
    lease = mgr.acquire_lease("t", ttl(3))
    other = mgr.acquire_lease("u", ttl(30))
    mine = inject(mgr, lease.id, spec(), secs(60))
    theirs = inject(mgr, other.id, spec(), secs(60))
    clock.advance(2)
    mgr.renew_lease(other.id)
    clock.advance(1.01)
    mgr.run_due()
    assert wait_for(lambda: mgr.get(mine.id).state == State.REVERTED, 5)
    assert mgr.get(mine.id).end_reason == EndReason.LEASE_EXPIRED
    assert mgr.get(theirs.id).state == State.ACTIVE
    with pytest.raises(NotFound):
        mgr.renew_lease(lease.id)
    with pytest.raises(NotFound):
        inject(mgr, lease.id, spec(), secs(60))


def test_duration_ends_the_fault(
    setup: tuple[FaultManager, MemoryInjector], clock: FakeClock
) -> None:
    mgr, _inj = setup
    lease = mgr.acquire_lease("t", ttl(300))
    fault = inject(mgr, lease.id, spec(), secs(5))
    clock.advance(5)
    mgr.run_due()
    assert wait_for(lambda: mgr.get(fault.id).state == State.REVERTED, 5)
    assert mgr.get(fault.id).end_reason == EndReason.DURATION_ELAPSED


def test_halt_latch_refuses_new_faults_until_resume(
    setup: tuple[FaultManager, MemoryInjector],
) -> None:
    mgr, _inj = setup
    lease = mgr.acquire_lease("t", ttl(30))
    fault = inject(mgr, lease.id, spec(), secs(60))
    reverted, latched = mgr.halt(latch=True, reason="incident")
    assert latched and [f.id for f in reverted] == [fault.id]
    assert reverted[0].end_reason == EndReason.HALT
    with pytest.raises(FailedPrecondition, match="halted"):
        inject(mgr, lease.id, spec(), secs(60))
    assert mgr.resume() is True
    assert inject(mgr, lease.id, spec(), secs(60)).state == State.ACTIVE


def test_request_id_makes_inject_idempotent(setup: tuple[FaultManager, MemoryInjector]) -> None:
    mgr, inj = setup
    lease = mgr.acquire_lease("t", ttl(30))
    a = inject(mgr, lease.id, spec(), secs(60), request_id="r1")
    b = inject(mgr, lease.id, spec(), secs(60), request_id="r1")
    assert a.id == b.id and len(inj.world) == 1


def test_bad_requests_leave_nothing(setup: tuple[FaultManager, MemoryInjector]) -> None:
    mgr, inj = setup
    lease = mgr.acquire_lease("t", ttl(30))
    with pytest.raises(InvalidArgument, match=r"^spec: no fault kind set"):
        inject(mgr, lease.id, pb.FaultSpec(), secs(60))
    with pytest.raises(InvalidArgument, match=r"^cpu.load_percent"):
        inject(mgr, lease.id, spec(0), secs(60))
    with pytest.raises(InvalidArgument, match=r"^duration: .*limit of 3600s"):
        inject(mgr, lease.id, spec(), secs(7200))
    with pytest.raises(FailedPrecondition, match="'memory' is not supported"):
        inject(mgr, lease.id, pb.FaultSpec(memory=pb.MemorySpec(bytes=1)), secs(5))
    with pytest.raises(InvalidArgument, match=r"^ttl: .*limit of 300s"):
        mgr.acquire_lease("t", ttl(301))
    with pytest.raises(InvalidArgument, match=r"^holder"):
        mgr.acquire_lease(" ", ttl(10))
    assert mgr.list_faults() == [] and inj.world == {} and mgr.journal_ids() == []


def test_recover_reverts_every_journaled_fault(tmp_path: Path, clock: FakeClock) -> None:
    journal = Journal(tmp_path)
    journal.write("fault-old", {"kind": "cpu", "undo": {"key": "fault-old"}, "lease_id": "l"})
    inj = MemoryInjector(journal)
    inj.world["fault-old"] = 1
    mgr = FaultManager({"cpu": inj}, journal, clock, Limits(), Metrics(), ProtoCodec())
    mgr.start(run_scheduler=False)
    (fault,) = mgr.recover()
    assert fault.state == State.REVERTED and fault.end_reason == EndReason.AGENT_RESTART
    assert inj.world == {} and journal.fault_ids() == []
    mgr.shutdown()


def test_overdue_gauge_reports_a_fault_past_its_lease(
    setup: tuple[FaultManager, MemoryInjector], clock: FakeClock
) -> None:
    mgr, _ = setup
    lease = mgr.acquire_lease("t", ttl(3))
    fault = inject(mgr, lease.id, spec(), secs(60))
    assert mgr._overdue_by_kind() == {"cpu": 0.0}
    clock.advance(5)  # the scheduler has not run: the switch is late by 2 s
    assert mgr._overdue_by_kind()["cpu"] == pytest.approx(2.0)
    mgr.run_due()
    assert wait_for(lambda: mgr.get(fault.id).state == State.REVERTED, 5)
    assert mgr._overdue_by_kind() == {"cpu": 0.0}


def test_history_keeps_the_newest_ended_faults_and_every_live_one(
    setup: tuple[FaultManager, MemoryInjector], monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr, _ = setup
    monkeypatch.setattr(table_module, "HISTORY_LIMIT", 3)
    lease = mgr.acquire_lease("t", ttl(10))
    kept_live = inject(mgr, lease.id, spec(), secs(60))  # oldest of all, stays
    ended = []
    for _ in range(6):
        f = inject(mgr, lease.id, spec(), secs(60))
        ended.append(mgr.revert(f.id, EndReason.CLIENT_REVERT).id)
    last = inject(mgr, lease.id, spec(), secs(60))  # prunes on inject
    ids = [f.id for f in mgr.list_faults()]
    assert ids == [kept_live.id, *ended[-3:], last.id]
    assert mgr.active_count() == 2


def test_a_leases_generation_moves_on_changes_its_holders_replies_do_not_tell(
    setup: tuple[FaultManager, MemoryInjector], clock: FakeClock
) -> None:
    """The lease datagrams' answers carry it: the holder's own inject and revert
    (from the peer holding the lease) are told by their replies; a fault's
    end by its duration, or another caller's revert, moves it."""
    mgr, _inj = setup
    holder = "ipv4:127.0.0.1:40000"
    lease = mgr.acquire_lease("t", ttl(300), peer=holder)

    def generation() -> int:
        found = mgr.leases.peek(lease.id)
        assert found is not None
        return found.generation

    req = pb.InjectFaultRequest(lease_id=lease.id, spec=spec(), duration=secs(5))
    own = mgr.inject(inject_request(req, mgr.kinds, caller="t", caller_peer=holder))
    mgr.revert(own.id, EndReason.CLIENT_REVERT, peer=holder)
    assert generation() == 0
    req.duration.CopyFrom(secs(60))  # outlives the duration end below
    other = mgr.inject(inject_request(req, mgr.kinds, caller="t", caller_peer="ipv4:10.0.0.9:1"))
    assert generation() == 2  # pending, active: told to another caller, not the holder
    ends = inject(mgr, lease.id, spec(), secs(5))
    before = generation()
    clock.advance(5)
    mgr.run_due()
    assert wait_for(lambda: mgr.get(ends.id).state == State.REVERTED, 5)
    assert generation() > before
    before = generation()
    mgr.revert(other.id, EndReason.CLIENT_REVERT, peer="ipv4:10.0.0.9:1")
    assert mgr.get(other.id).state == State.REVERTED
    assert generation() == before + 2  # reverting, reverted: not the holder's reply
