"""A controller that holds a lease on every agent named, over lease datagrams
where they offer them, with one CPU fault on each, and then only keeps the
leases: for the benchmark to stop it with SIGSTOP, or to cut its datagrams
off. Prints one JSON line once every fault is applied: each agent's fault id
and lease mode. Then each line "modes" on its stdin is answered with a JSON
line: how many leases are in each mode, and those lost; "status" adds each
fault's state as its agent reports it (a call to every agent).

    python -m tests.bench.holder TTL ADDRESS...
"""

from __future__ import annotations

import collections
import json
import sys
import time

from brownout import logs
from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.fleet import Fleet

SPEC = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=1))


def main() -> None:
    ttl, addresses = float(sys.argv[1]), sys.argv[2:]
    logs.configure("warning")  # on stderr: stdout carries the answers
    with Fleet(inventory.build(agents=addresses), timeout=10) as fleet:
        fleet.acquire_leases(addresses, "stopped-holder", ttl)

        async def inject(c: AsyncAgentClient) -> pb.Fault:
            return await c.inject(fleet.keepers[c.address].lease_id, SPEC, 600)

        faults = fleet.map(inject, addresses)
        ids = {a: o.value.id for a, o in faults.items() if o.value is not None}
        print(json.dumps({
            "faults": ids,
            "errors": [o.error for o in faults.values() if o.error][:3],
            "modes": sorted({k.mode for k in fleet.keepers.values()}),
        }), flush=True)  # fmt: skip

        async def state(c: AsyncAgentClient) -> str:
            return pb.FaultState.Name((await c.get_fault(ids[c.address])).state)

        for line in sys.stdin:
            if line.strip() not in ("status", "modes"):
                continue
            answer = {"modes": collections.Counter(k.mode for k in fleet.keepers.values()),
                      "lost": fleet.lost()}  # fmt: skip
            if line.strip() == "status":
                states = fleet.map(state, list(ids))
                answer["states"] = collections.Counter(o.value or o.error for o in states.values())
            print(json.dumps(answer), flush=True)
        while True:  # no stdin (as under SIGSTOP): hold until killed
            time.sleep(1)


if __name__ == "__main__":
    main()
