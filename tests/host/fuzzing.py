"""The fuzzing harness for one real agent process: the limits it runs with,
what counts as a proper answer, the state of the host before and after, and
the Fuzzer that sends requests (well formed or raw bytes) and judges them.
The tests are in test_fuzz.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.kernel import fs
from agent.kernel.procs import find_marked
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.fuzzsettings import EXAMPLES

# Raw bytes per method, on top of the EXAMPLES well-formed requests per RPC.
RAW_EXAMPLES = max(100, EXAMPLES // 20)

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


def identity(data: bytes) -> bytes:
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
            request_serializer=identity,
            response_deserializer=identity,
        )

    def call(
        self, method: MethodDescriptor, request: bytes, window: float = WATCH_WINDOW
    ) -> Outcome:
        out = self._call(method, request, window)
        self.codes[method.name, out.code.name] += 1
        return out

    def _call(self, method: MethodDescriptor, request: bytes, window: float) -> Outcome:
        if method.client_streaming:
            return self._bidi(method, request)
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
            request_serializer=identity,
            response_deserializer=identity,
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

    def _bidi(self, method: MethodDescriptor, request: bytes) -> Outcome:
        """One message up, then half-close: the agent answers it and ends the stream."""
        call = self.channel.stream_stream(
            f"/{SERVICE.full_name}/{method.name}",
            request_serializer=identity,
            response_deserializer=identity,
        )(iter([request]), timeout=CALL_TIMEOUT)
        cls = GetMessageClass(method.output_type)
        try:
            answers = [cls.FromString(data) for data in call]
        except grpc.RpcError as err:
            return Outcome(err.code(), err.details() or "")
        assert len(answers) == 1, answers  # one answer per heartbeat
        return Outcome(call.code(), call.details() or "", answers[0])

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
