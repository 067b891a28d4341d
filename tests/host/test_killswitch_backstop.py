"""The kill switch's backstop: before its Halt fan-out it stops renewing every
lease the service holds, so an agent that no Halt reaches still reverts the
run's faults by itself within the TTL.

Each agent is reached over gRPC through a forwarder on loopback that the test
cuts: from then on it accepts and reads, and forwards nothing, as a gRPC path
that hangs. The lease datagrams go straight to the agent's UDP port, so until
the switch the leases stay renewed, and the faults stay active."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.connection import AgentConnection
from controller.experiments import parse as exp
from controller.experiments.metrics import ControllerMetrics
from controller.service.auth import Tokens
from controller.service.state import Service
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc, ext, live_faults

pytestmark = pytest.mark.host

TTL = 3.0
CALL_TIMEOUT = 2.0  # the fleet's per-call timeout: a Halt into the cut path waits this long


class Forwarder:
    """127.0.0.1:port -> one agent's gRPC port, until cut()."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_at = 0.0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.cut_at = time.monotonic()

    def _accept(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.listener], [], [], 0.1)[0]:
                continue
            client, _ = self.listener.accept()
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            t = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            self._threads.append(t)
            t.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        while not self._stop.is_set():
            readable = select.select([a, b], [], [], 0.1)[0]
            for s in readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if not self.cut_at:  # once cut, read and drop: the path hangs
                    peer[s].sendall(data)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in [self.listener, *self._sockets]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def forwarders(fleet: list[AgentProc]) -> Iterator[list[Forwarder]]:
    fs = [Forwarder(("127.0.0.1", a.port)) for a in fleet]
    try:
        yield fs
    finally:
        for f in fs:
            f.close()


def test_faults_end_within_the_ttl_where_no_halt_arrives(
    fleet: list[AgentProc], forwarders: list[Forwarder], tmp_path: Path
) -> None:
    refs = inventory.build(agents=[f.address for f in forwarders])
    svc = Service.build(
        AgentConnection.of(refs, CALL_TIMEOUT), tmp_path, Tokens([]), ControllerMetrics()
    )
    try:
        experiment = exp.parse(doc(brownout={"ramp": {"steps": [100], "hold": "60s"}}))
        run = svc.runs.start(experiment, "test")
        assert wait_for(lambda: len(live_faults(fleet)) == len(fleet), 30)
        for f in forwarders:
            f.cut()
        # Cut off from gRPC, the leases are still renewed by datagram.
        time.sleep(2 * TTL)
        assert len(live_faults(fleet)) == len(fleet)

        leases = set(run.runner.fleet.lease_ids().values())
        assert len(leases) == len(fleet)

        engaged: dict[str, Any] = {}
        lever = threading.Thread(target=lambda: engaged.update(svc.lever.engage("test", "tester")))
        t0 = time.monotonic()
        lever.start()
        assert wait_for(lambda: not live_faults(fleet), TTL + 2)
        gone_s = time.monotonic() - t0
        lever.join(CALL_TIMEOUT + 10)
        assert not lever.is_alive()
        assert gone_s <= TTL + 1.0, gone_s
        assert engaged["leases_abandoned"] == len(fleet)
        # No Halt arrived: each agent reverted by itself, at the lease's expiry.
        assert sorted(engaged["agents_failed"]) == sorted(f.address for f in forwarders)
        ends = []
        for a in fleet:
            with a.client() as c:
                ends += [f.end_reason for f in c.list_faults() if f.lease_id in leases]
        assert ends == [pb.END_REASON_LEASE_EXPIRED] * len(fleet), ends

        assert svc.runs.wait_all(60)
        journal = run.journal()
        assert journal["status"] == "aborted"
        # The switch gave the leases up: not a problem of the run's.
        problems = ext(journal)["fault_problems"]
        assert not [p for p in problems if p["problem"] == "lease lost"], problems
    finally:
        svc.close()
        for a in fleet:  # the switch latched them: released directly, not through the cut path
            with a.client() as c:
                c.resume()
