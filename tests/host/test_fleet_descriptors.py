"""A fleet with more agents than descriptors (descriptors.py) closes each
agent's connection when idle: its leases live on by datagram meanwhile, and
the next call reconnects, and closes again. One whose agents fit keeps its
connections."""

from __future__ import annotations

import time

import psutil
import pytest

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.descriptors import IDLE_CLOSE_S, RESERVE
from controller.agents.fleet import Fleet
from tests.agentproc import AgentProc, wait_for

pytestmark = pytest.mark.host

CPU = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))
TTL = 1.5  # shorter than the wait below: only datagrams keep the leases


def connected(agents: list[AgentProc]) -> int:
    """This process's established TCP connections to the agents' gRPC ports."""
    ports = {a.port for a in agents}
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in ports
    )


def test_over_its_descriptors_a_fleet_drops_idle_connections_and_keeps_its_leases(
    fleet: list[AgentProc],
) -> None:
    addresses = [a.address for a in fleet]
    with Fleet(inventory.build(agents=addresses), timeout=5, fd_limit=RESERVE + 2) as f:
        assert f.idle is not None
        assert all(o.ok for o in f.acquire_leases(addresses, "test", TTL).values())
        ids = f.lease_ids()
        injected = f.map(lambda c: c.inject(ids[c.address], CPU, 60))
        assert all(o.ok for o in injected.values()), injected
        assert connected(fleet) == len(fleet)
        # Idle: every connection drops, and no lease goes with it.
        assert wait_for(lambda: connected(fleet) == 0, IDLE_CLOSE_S + 2.0, 0.1)
        time.sleep(TTL)
        assert f.lost() == {}
        assert all(k.mode == "datagram" for k in f.keepers.values())
        # The next call reconnects; every fault was still active.
        fault_ids = {a: o.value.id for a, o in injected.items() if o.value is not None}
        reverted = f.map(lambda c: c.revert(fault_ids[c.address]))
        ends = [o.value.end_reason if o.value else o.error for o in reverted.values()]
        assert ends == [pb.END_REASON_CLIENT_REVERT] * len(fleet), ends
        assert connected(fleet) == len(fleet)
        # And they close again, every time (gRPC's own idle timeout did once).
        assert wait_for(lambda: connected(fleet) == 0, IDLE_CLOSE_S + 2.0, 0.1)
        released = [f.loop.run(f.release(a)) for a in addresses]
        assert all(r is not None for r in released)
        assert wait_for(lambda: connected(fleet) == 0, IDLE_CLOSE_S + 2.0, 0.1)
        assert f.idle.closed == 3 * len(fleet)


def test_a_fleet_that_fits_keeps_its_connections(fleet: list[AgentProc]) -> None:
    addresses = [a.address for a in fleet]
    with Fleet(inventory.build(agents=addresses), timeout=5) as f:
        assert f.idle is None
        assert all(s.reachable for s in f.statuses().values())
        time.sleep(IDLE_CLOSE_S + 1.0)
        assert connected(fleet) == len(fleet)
