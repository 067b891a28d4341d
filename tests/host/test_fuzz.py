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

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from agent.kernel import fs
from agent.kernel.procs import find_marked
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.strategies import messages, raw_requests

pytestmark = pytest.mark.host

EXAMPLES = int(os.environ.get("BROWNOUT_FUZZ_EXAMPLES", "2000"))
# Raw bytes per method, on top of the EXAMPLES well-formed requests per RPC.
RAW_EXAMPLES = max(100, EXAMPLES // 20)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

SERVICE = pb.DESCRIPTOR.services_by_name["Agent"]
METHODS = {m.name: m for m in SERVICE.methods}
MAX_FAULT_DURATION_S = 2
MAX_ACTIVE_FAULTS = 2
MAX_LEASE_TTL_S = 60
MIN_LEASE_TTL_S = 1
AGENT_ARGS = [
    "--max-fault-duration",
    f"{MAX_FAULT_DURATION_S}s",
    "--max-active-faults",
    str(MAX_ACTIVE_FAULTS),
    "--min-lease-ttl",
    f"{MIN_LEASE_TTL_S}s",
    "--max-lease-ttl",
    f"{MAX_LEASE_TTL_S}s",
    "--log-level",
    "info",
]
CALL_TIMEOUT = 30.0
# How long a WatchFaults example listens before its deadline ends the stream.
WATCH_WINDOW = 0.01
WATCH_MAX_EVENTS = 20

C = grpc.StatusCode
# What a well-formed request may get. INTERNAL means the agent broke.
PROPER = frozenset(
    {
        C.OK,
        C.INVALID_ARGUMENT,
        C.NOT_FOUND,
        C.FAILED_PRECONDITION,
        C.ALREADY_EXISTS,
        C.RESOURCE_EXHAUSTED,
        C.PERMISSION_DENIED,
    }
)
# A stream also ends when the client's deadline passes or it cancels.
STREAM_ENDS = frozenset({C.DEADLINE_EXCEEDED, C.CANCELLED})
LIVE_STATES = [
    pb.FAULT_STATE_PENDING,
    pb.FAULT_STATE_ACTIVE,
    pb.FAULT_STATE_REVERTING,
    pb.FAULT_STATE_REVERT_FAILED,
]
ENDED_STATES = {pb.FAULT_STATE_REVERTED, pb.FAULT_STATE_FAILED}
GRPC_DESERIALIZE_LOG = "Exception deserializing message!"


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    response: Message | None = None
    events: list[pb.FaultEvent] = field(default_factory=list)


@dataclass
class HostState:
    """What the fuzzing must leave as it found it."""

    lo_qdiscs: str
    nft_tables: frozenset[str]

    @staticmethod
    def take() -> HostState:
        return HostState(lo_qdiscs(), nft_tables())


def lo_qdiscs() -> str:
    """`tc qdisc show dev lo`, or nothing without the tc binary."""
    if shutil.which("tc") is None:
        return ""
    out = subprocess.run(
        ["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True, check=True
    )
    return out.stdout


def nft_tables() -> frozenset[str]:
    """`family name` of every nftables table, or nothing without the nft binary."""
    if shutil.which("nft") is None:
        return frozenset()
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return frozenset(
        " ".join(line.split()[1:]) for line in out.stdout.splitlines() if line.startswith("table ")
    )


class Fuzzer:
    """One agent, a raw channel to it, a live lease, and what we learned so far."""

    def __init__(self, agent: AgentProc, before: HostState, tmp: Path) -> None:
        self.agent = agent
        self.before = before
        self.tmp = tmp
        self.channel = grpc.insecure_channel(agent.address)
        self._lease = ""
        self._lease_renewed = 0.0
        self.lease_ids: set[str] = set()  # every real lease we ever held
        self.fault_ids: list[str] = []  # real faults, for GetFault and RevertFault
        self.applied = 0
        self.counts: dict[str, int] = {}
        self.codes: Counter[tuple[str, str]] = Counter()  # (method, status) seen
        self._log_offset = 0

    # ------------------------------------------------------------- calling

    def _unary(self, method: MethodDescriptor) -> Callable[..., bytes]:
        return self.channel.unary_unary(
            f"/{SERVICE.full_name}/{method.name}",
            request_serializer=_identity,
            response_deserializer=_identity,
        )

    def call(
        self, method: MethodDescriptor, request: bytes, window: float = WATCH_WINDOW
    ) -> Outcome:
        out = self._call(method, request, window)
        self.codes[method.name, out.code.name] += 1
        return out

    def _call(self, method: MethodDescriptor, request: bytes, window: float) -> Outcome:
        if method.server_streaming:
            return self._stream(method, request, window)
        try:
            data = self._unary(method)(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as err:
            return Outcome(err.code(), err.details() or "")
        response = GetMessageClass(method.output_type).FromString(data)
        return Outcome(C.OK, "", response)

    def _stream(self, method: MethodDescriptor, request: bytes, window: float) -> Outcome:
        call = self.channel.unary_stream(
            f"/{SERVICE.full_name}/{method.name}",
            request_serializer=_identity,
            response_deserializer=_identity,
        )(request, timeout=window)
        events = []
        try:
            for data in call:
                events.append(pb.FaultEvent.FromString(data))
                if len(events) >= WATCH_MAX_EVENTS:
                    call.cancel()
                    break
        except grpc.RpcError as err:
            return Outcome(err.code(), err.details() or "", events=events)
        return Outcome(call.code(), call.details() or "", events=events)

    def stub_call(self, name: str, request: Message) -> Message:
        """A call that must succeed (setup and cleanup, not fuzzing)."""
        out = self.call(METHODS[name], request.SerializeToString())
        assert out.code == C.OK and out.response is not None, (name, request, out)
        return out.response

    # --------------------------------------------------------------- state

    def live_lease(self) -> str:
        """A lease that is certainly alive for the next few seconds."""
        if self._lease and time.monotonic() - self._lease_renewed < 5:
            return self._lease
        if self._lease:
            out = self.call(
                METHODS["RenewLease"],
                pb.RenewLeaseRequest(lease_id=self._lease).SerializeToString(),
            )
            if out.code == C.OK:
                self._lease_renewed = time.monotonic()
                return self._lease
        lease = self.stub_call(
            "AcquireLease", pb.AcquireLeaseRequest(holder="fuzz", ttl=Duration(seconds=30))
        )
        assert isinstance(lease, pb.Lease)
        self._lease, self._lease_renewed = lease.lease_id, time.monotonic()
        self.lease_ids.add(lease.lease_id)
        return self._lease

    def fresh_lease(self) -> str:
        lease = self.stub_call(
            "AcquireLease", pb.AcquireLeaseRequest(holder="fuzz-fresh", ttl=Duration(seconds=10))
        )
        assert isinstance(lease, pb.Lease)
        self.lease_ids.add(lease.lease_id)
        return lease.lease_id

    def not_a_lease(self, lease_id: str) -> str:
        """`lease_id`, unless it names a real lease (it never should)."""
        return lease_id + "-not" if lease_id in self.lease_ids else lease_id

    def revert_everything(self) -> None:
        self.stub_call("Halt", pb.HaltRequest(reason="fuzz cleanup"))
        self.stub_call("Resume", pb.ResumeRequest())

    def check_alive(self) -> None:
        assert self.agent.proc is not None
        rc = self.agent.proc.poll()
        assert rc is None, f"the agent died (exit {rc}):\n{self.agent.logs()[-5000:]}"

    def check_healthy(self) -> None:
        self.check_alive()
        health = health_pb2_grpc.HealthStub(self.channel)
        resp = health.Check(  # type: ignore[attr-defined]  # stub lacks methods
            health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=10
        )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        info = self.stub_call("GetInfo", pb.GetInfoRequest())
        assert isinstance(info, pb.AgentInfo)
        failures = self.new_failures()
        assert not failures, "the agent logged unexpected errors:\n" + "\n".join(failures)

    def new_failures(self) -> list[str]:
        """Unexpected exceptions the agent logged since the last look."""
        text = self.agent.logs()
        fresh, self._log_offset = text[self._log_offset :], len(text)
        bad: list[str] = []
        block: list[str] = []  # consecutive lines that are not JSON: grpc's own logging

        def end_block() -> None:
            # grpc logs each request it cannot deserialise, with a traceback:
            # that is the raw-bytes test doing its job.
            expected = block[:1] == [GRPC_DESERIALIZE_LOG] and block[-1].startswith(
                "google.protobuf.message.DecodeError"
            )
            if block and not expected:
                bad.append("\n".join(block))
            block.clear()

        for line in fresh.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                if line == GRPC_DESERIALIZE_LOG:
                    end_block()
                block.append(line)
                continue
            end_block()
            if isinstance(event, dict) and event.get("event") == "rpc failed":
                bad.append(line)
        end_block()
        return bad

    def live_faults(self) -> list[pb.Fault]:
        resp = self.stub_call("ListFaults", pb.ListFaultsRequest(states=LIVE_STATES))
        assert isinstance(resp, pb.ListFaultsResponse)
        return list(resp.faults)

    def residue(self) -> list[str]:
        """Everything the fuzzing left behind; empty when clean."""
        problems = []
        if self.agent.proc is not None and self.agent.proc.poll() is None:
            wait_for(lambda: not self.live_faults(), timeout=15, interval=0.1)
            live = self.live_faults()
            if live:
                problems.append(f"faults still live: {[(f.id, f.state) for f in live]}")
        wait_for(lambda: not find_marked(self.agent.instance), timeout=15, interval=0.1)
        if marked := find_marked(self.agent.instance):
            problems.append(f"processes bearing the agent's markers: {marked}")
        if journal := self.agent.journal_files():
            problems.append(f"journal not empty: {journal}")
        if files := fs.marked_files(self.agent.instance):
            problems.append(f"files bearing the agent's markers: {files}")
        if dirs := sorted(str(p) for p in self.tmp.rglob(fs.DIR_NAME)):
            problems.append(f"{fs.DIR_NAME} directories under the test's tmp dir: {dirs}")
        now = HostState.take()
        if now.lo_qdiscs != self.before.lo_qdiscs:
            problems.append(f"qdiscs on lo changed: {self.before.lo_qdiscs!r} -> {now.lo_qdiscs!r}")
        tables = [
            t
            for t in now.nft_tables - self.before.nft_tables
            if t.split()[-1].startswith("brownout")
        ]
        if tables:
            problems.append(f"nftables tables left: {tables}")
        return problems


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
            request_serializer=_identity,
            response_deserializer=_identity,
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
