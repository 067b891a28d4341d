"""A controller-side lease holder for the partition test, run inside a netns test
host: `python -m tests.reliability.lease_holder ADDRESS TTL`.

It acquires a lease, injects a CPU fault, keeps the lease with the controller's
LeaseKeeper and reports on stdout (lines "HOLDER <json>", among any log lines): the fault, then
{"lost": reason} when the keeper gives up. On the line "healed" from stdin it
renews once more and reports {"renew": CODE}: the agent must say NOT_FOUND."""

from __future__ import annotations

import json
import sys
import time

import grpc

from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient
from tests.leasekeeper import LeaseKeeper


def say(**fields: object) -> None:
    print("HOLDER " + json.dumps(fields), flush=True)


def main() -> None:
    address, ttl = sys.argv[1], float(sys.argv[2])
    with AgentClient(address, timeout=5) as c:
        lease = c.acquire_lease("reliability-partition", ttl)
        spec = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=10))
        fault = c.inject(lease.lease_id, spec, 120)
        keeper = LeaseKeeper(c, lease.lease_id, ttl).start()
        say(lease_id=lease.lease_id, fault_id=fault.id, worker_pids=fault.applied["worker_pids"])
        keeper.lost.wait(120)
        say(lost=keeper.lost_reason)
        if sys.stdin.readline().strip() != "healed":
            return
        deadline = time.monotonic() + 15
        while True:  # the channel may still be backing off from the partition
            try:
                c.renew_lease(lease.lease_id, timeout=2)
                say(renew="OK")
                return
            except grpc.RpcError as err:
                transient = err.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not transient or time.monotonic() > deadline:
                    say(renew=err.code().name, details=err.details())
                    return
            time.sleep(0.2)


if __name__ == "__main__":
    main()
