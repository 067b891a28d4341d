"""A controller that holds a lease on every agent named, over lease datagrams
where they offer them, with one CPU fault on each, and then only keeps the
leases: for the benchmark to stop it with SIGSTOP. Prints one JSON line once
every fault is applied: each agent's fault id and lease mode.

    python -m tests.bench.holder TTL ADDRESS...
"""

from __future__ import annotations

import json
import sys
import time

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.fleet import Fleet

SPEC = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=1))


def main() -> None:
    ttl, addresses = float(sys.argv[1]), sys.argv[2:]
    with Fleet(inventory.build(agents=addresses), timeout=10) as fleet:
        fleet.acquire_leases(addresses, "stopped-holder", ttl)

        async def inject(c: AsyncAgentClient) -> pb.Fault:
            return await c.inject(fleet.keepers[c.address].lease_id, SPEC, 600)

        faults = fleet.map(inject, addresses)
        print(json.dumps({
            "faults": {a: o.value.id for a, o in faults.items() if o.value is not None},
            "errors": [o.error for o in faults.values() if o.error][:3],
            "modes": sorted({k.mode for k in fleet.keepers.values()}),
        }), flush=True)  # fmt: skip
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
