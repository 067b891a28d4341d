"""Arbitrary and malformed requests for every RPC of brownout.v1.Agent, against one
real agent process. The agent must always answer with a proper status, never
crash, and leave no residue.

Requests come from the descriptors (tests/strategies.py), so a new fault kind
or field is fuzzed without touching this file, and so is a new RPC once
test_every_rpc_is_fuzzed has been told about it.

Safety: this agent runs as root and applies what validates. Only the `cpu` arm
is ever sent with a live lease (and every fault that gets applied is reverted
right away); every other spec arm goes with a lease id that does not exist, so
it exercises the request and lease path and can never be applied here.

`make test` runs BROWNOUT_FUZZ_EXAMPLES (default 2000) examples per RPC,
`make fuzz` ten times more. The runs are derandomised, so CI is reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given, note, settings
from hypothesis import strategies as st

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.fuzzsettings import EXAMPLES, FUZZ
from tests.host.fuzzing import (
    AGENT_ARGS,
    CALL_TIMEOUT,
    ENDED_STATES,
    MAX_LEASE_TTL_S,
    METHODS,
    MIN_LEASE_TTL_S,
    PROPER,
    RAW_EXAMPLES,
    SERVICE,
    STREAM_ENDS,
    C,
    Fuzzer,
    HostState,
    Outcome,
    identity,
)
from tests.strategies import messages, raw_requests

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    before = HostState.take()
    agent = AgentProc(tmp / "state", extra_args=AGENT_ARGS).start()
    f = Fuzzer(agent, before, tmp)
    try:
        # A little history, so GetFault and RevertFault also meet real faults.
        lease = f.live_lease()
        for _ in range(2):
            fault = f.stub_call(
                "InjectFault",
                pb.InjectFaultRequest(
                    lease_id=lease,
                    spec=pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=1)),
                    duration=Duration(nanos=50_000_000),
                ),
            )
            assert isinstance(fault, pb.Fault)
            f.fault_ids.append(fault.id)
        yield f
        problems = f.residue()
    finally:
        f.channel.close()
        rc = agent.stop() if agent.proc is not None and agent.proc.poll() is None else None
    after_stop = f.residue()
    assert rc == 0, f"agent exit status {rc}:\n{agent.logs()[-5000:]}"
    assert not problems and not after_stop, "\n".join(problems + after_stop)


@pytest.fixture(autouse=True)
def healthy_around(fuzzer: Fuzzer) -> Iterator[None]:
    fuzzer.revert_everything()
    yield
    fuzzer.check_healthy()
    fuzzer.revert_everything()


# ----------------------------------------------------------- per-RPC hooks
#
# A hook may plant real ids in the request before it is sent (`prepare`) and
# checks and cleans up after (`after`). Methods without hooks are fuzzed as is.


@dataclass
class Example:
    method: MethodDescriptor
    request: Message
    planted: str = ""  # what prepare did, for the checks after


def prepare(f: Fuzzer, ex: Example, choice: int, data: st.DataObject) -> None:
    req = ex.request
    if isinstance(req, pb.InjectFaultRequest):
        prepare_inject(f, ex, choice, data)
    elif isinstance(req, pb.RenewLeaseRequest | pb.ListFaultsRequest | pb.WatchFaultsRequest):
        if choice % 3 == 0:
            req.lease_id = f.live_lease()
            ex.planted = "lease"
    elif isinstance(req, pb.LeaseHeartbeat):
        req.lease_ids[:] = [f.not_a_lease(i) for i in req.lease_ids]
        if choice % 3 == 0:
            req.lease_ids.insert(0, f.live_lease())
            ex.planted = "lease"
    elif isinstance(req, pb.ReleaseLeaseRequest):
        if choice % 3 == 0:
            req.lease_id = f.fresh_lease()
            ex.planted = "lease"
        else:
            req.lease_id = f.not_a_lease(req.lease_id)
    elif isinstance(req, pb.GetFaultRequest | pb.RevertFaultRequest):
        known = f.fault_ids[choice % len(f.fault_ids)] if f.fault_ids else ""
        if choice % 3 == 0 and known:
            req.fault_id = known
            ex.planted = "fault"


def prepare_inject(f: Fuzzer, ex: Example, choice: int, data: st.DataObject) -> None:
    """Half the requests get the live lease and a cpu spec (the one arm safe to
    apply here). Everything else goes with a lease that does not exist."""
    req = ex.request
    assert isinstance(req, pb.InjectFaultRequest)
    if choice % 2:
        req.lease_id = f.not_a_lease(req.lease_id)
        return
    cpu = data.draw(messages(pb.CpuSpec, with_unknown=False), label="cpu spec")
    assert isinstance(cpu, pb.CpuSpec)
    req.lease_id = f.live_lease()
    req.spec.cpu.CopyFrom(cpu)  # clears any other arm
    ex.planted = "lease"


def after(f: Fuzzer, ex: Example, out: Outcome) -> None:
    req, resp = ex.request, out.response
    if isinstance(req, pb.InjectFaultRequest):
        if out.code != C.OK:
            return
        assert isinstance(resp, pb.Fault)
        if req.validate_only:  # checked, never made: no id, no state, nothing to revert
            assert resp.id == "" and resp.state == pb.FAULT_STATE_UNSPECIFIED, resp
            return
        # Only the live lease with a cpu spec can ever get a fault applied here.
        assert ex.planted == "lease", ("applied with a fake lease?", req, resp)
        assert resp.kind == pb.FAULT_KIND_CPU and resp.lease_id == req.lease_id, resp
        f.applied += 1
        f.fault_ids.append(resp.id)
        reverted = f.stub_call("RevertFault", pb.RevertFaultRequest(fault_id=resp.id))
        assert isinstance(reverted, pb.Fault)
        assert reverted.state in ENDED_STATES, reverted
    elif isinstance(req, pb.AcquireLeaseRequest):
        if out.code != C.OK:
            return
        assert isinstance(resp, pb.Lease)
        assert resp.lease_id.startswith("lease-"), resp
        ttl = resp.ttl.ToNanoseconds() / 1e9
        assert MIN_LEASE_TTL_S <= ttl <= MAX_LEASE_TTL_S, resp
        f.stub_call("ReleaseLease", pb.ReleaseLeaseRequest(lease_id=resp.lease_id))
    elif isinstance(req, pb.RenewLeaseRequest):
        if ex.planted:
            assert out.code == C.OK, out
        if out.code == C.OK:
            assert isinstance(resp, pb.Lease) and resp.lease_id == req.lease_id, resp
    elif isinstance(req, pb.LeaseHeartbeat):
        if out.code != C.OK:
            assert out.code == C.INVALID_ARGUMENT, out
            return
        assert isinstance(resp, pb.LeaseStates) and resp.seq == req.seq, resp
        assert [x.lease_id for x in resp.leases] == list(req.lease_ids), resp
        for state in resp.leases:
            # Only the planted lease is real; nothing else may come alive.
            assert state.live == (ex.planted == "lease" and state.lease_id == req.lease_ids[0])
    elif isinstance(req, pb.ReleaseLeaseRequest):
        if ex.planted:
            assert out.code == C.OK, out
    elif isinstance(req, pb.GetFaultRequest | pb.RevertFaultRequest):
        if ex.planted:
            assert out.code == C.OK, out
        if out.code == C.OK:
            assert isinstance(resp, pb.Fault) and resp.id == req.fault_id, resp
    elif isinstance(req, pb.ListFaultsRequest):
        if out.code != C.OK:
            return
        assert isinstance(resp, pb.ListFaultsResponse)
        for fault in resp.faults:
            assert not req.lease_id or fault.lease_id == req.lease_id, fault
            assert not req.states or fault.state in req.states, fault
    elif isinstance(req, pb.HaltRequest):
        assert out.code == C.OK, out
        assert isinstance(resp, pb.HaltResponse)
        f.stub_call("Resume", pb.ResumeRequest())
    elif isinstance(req, pb.WatchFaultsRequest):
        for event in out.events:
            assert not req.lease_id or event.fault.lease_id == req.lease_id, event


def check_outcome(ex: Example, out: Outcome, wire: bytes) -> None:
    allowed = PROPER | (STREAM_ENDS if ex.method.server_streaming else frozenset())
    assert out.code in allowed, (
        f"{ex.method.name} answered {out.code.name} ({out.details!r}) to a well-formed"
        f" request: {ex.request!r} (wire: {wire!r})"
    )
    # The client dropping a status whose details are too big to carry (it then
    # reports RESOURCE_EXHAUSTED itself) means the agent's answer was lost.
    assert "metadata size exceeds" not in out.details, (ex.method.name, out, ex.request)


# ------------------------------------------------------------------- tests


def test_every_rpc_is_fuzzed() -> None:
    """A new RPC must be added here on purpose (and is then fuzzed generically)."""
    assert set(METHODS) == {
        "GetInfo",
        "AcquireLease",
        "RenewLease",
        "ReleaseLease",
        "InjectFault",
        "RevertFault",
        "GetFault",
        "ListFaults",
        "Halt",
        "Resume",
        "WatchFaults",
        "KeepLeases",
    }


@pytest.mark.parametrize("name", list(METHODS))
def test_well_formed_requests_get_a_proper_status(fuzzer: Fuzzer, name: str) -> None:
    method = METHODS[name]
    request_cls = GetMessageClass(method.input_type)
    runs = 0

    @FUZZ
    @given(request=messages(request_cls), choice=st.integers(0, 2**16), data=st.data())
    def run(request: Message, choice: int, data: st.DataObject) -> None:
        nonlocal runs
        runs += 1
        ex = Example(method, request)
        prepare(fuzzer, ex, choice, data)
        note(f"{name}({text_format.MessageToString(ex.request, as_one_line=True)})")
        wire = ex.request.SerializeToString()
        out = fuzzer.call(method, wire)
        check_outcome(ex, out, wire)
        after(fuzzer, ex, out)
        fuzzer.check_alive()

    run()
    assert runs >= EXAMPLES, f"only {runs} examples for {name}"
    fuzzer.counts[name] = runs


@pytest.mark.parametrize("name", list(METHODS))
def test_malformed_bytes_get_a_proper_status(fuzzer: Fuzzer, name: str) -> None:
    method = METHODS[name]
    request_cls = GetMessageClass(method.input_type)

    @settings(FUZZ, max_examples=RAW_EXAMPLES)
    @given(raw=raw_requests(request_cls))
    def run(raw: bytes) -> None:
        try:
            parsed = request_cls.FromString(raw)
        except DecodeError:
            parsed = None
        if parsed is None:
            # The refusal comes at once; a short stream window could end first.
            out = fuzzer.call(method, raw, window=CALL_TIMEOUT)
            assert out.code == C.INTERNAL and "deserializ" in out.details, (name, raw, out)
        else:
            ex = Example(method, parsed)
            if isinstance(parsed, pb.InjectFaultRequest | pb.ReleaseLeaseRequest):
                parsed.lease_id = fuzzer.not_a_lease(parsed.lease_id)
                raw = parsed.SerializeToString()
            out = fuzzer.call(method, raw)
            check_outcome(ex, out, raw)
            after(fuzzer, ex, out)
        fuzzer.check_alive()

    run()


def test_oversized_request_is_refused(fuzzer: Fuzzer) -> None:
    huge = pb.AcquireLeaseRequest(holder="x" * (5 * 1024 * 1024), ttl=Duration(seconds=5))
    out = fuzzer.call(METHODS["AcquireLease"], huge.SerializeToString())
    assert out.code == C.RESOURCE_EXHAUSTED, out


def test_concurrent_watchers_are_bounded_and_freed(fuzzer: Fuzzer) -> None:
    """Many streams at once: some are refused, none hangs, and every slot comes back."""
    method = METHODS["WatchFaults"]
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def watch() -> None:
        call = fuzzer.channel.unary_stream(
            f"/{SERVICE.full_name}/{method.name}",
            request_serializer=identity,
            response_deserializer=identity,
        )(pb.WatchFaultsRequest(include_existing=True).SerializeToString(), timeout=1.0)
        try:
            for _ in call:
                pass
        except grpc.RpcError as err:
            with lock:
                codes.append(err.code())

    threads = [threading.Thread(target=watch) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert set(codes) <= {C.DEADLINE_EXCEEDED, C.RESOURCE_EXHAUSTED}, codes
    assert C.RESOURCE_EXHAUSTED in codes
    # Every slot is free again: a new stream is served, not refused.
    out = Outcome(C.RESOURCE_EXHAUSTED, "")

    def served() -> bool:
        nonlocal out
        # Long enough for a refusal to arrive before the deadline does.
        out = fuzzer.call(method, pb.WatchFaultsRequest().SerializeToString(), window=0.5)
        return out.code == C.DEADLINE_EXCEEDED

    assert wait_for(served, timeout=5, interval=0.1), out


def test_no_residue_after_fuzzing(fuzzer: Fuzzer) -> None:
    """Runs last in this module; the fixture checks again after stopping the agent."""
    fuzzer.revert_everything()
    problems = fuzzer.residue()
    assert not problems, "\n".join(problems)
    print(f"examples per RPC: {fuzzer.counts}; faults really applied: {fuzzer.applied}")
    for (method, code), n in sorted(fuzzer.codes.items()):
        print(f"  {method:13} {code:20} {n}")
