"""The fleet page and GET /api/v1/fleet at any fleet size: served from memory,
a page at a time, never a GetInfo per agent per load.

Each agent's last GetInfo is kept and refreshed in the background on the
fleet's loop: after REFRESH_S, or in the next sweep when the lease datagrams
say its faults changed (its generation moved); after the first pass, at most
BATCH agents per SWEEP_S. An agent that answered a lease datagram
since its last GetInfo, with the same generation, is known to be up without
asking again, which is what keeps a busy fleet's view cheap. A page is the
sorted inventory filtered by label selector and state, with counts by state,
zone and version over everything the filter matched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from controller.agents.fleet import AgentStatus, Fleet
from controller.agents.loop import cancel
from controller.experiments.selection import Selector

REFRESH_S = 60.0  # GetInfo again after this long, for agents no lease keeps in touch
SWEEP_S = 1.0  # how often stale entries are looked for
BATCH = 512  # GetInfo calls per sweep at most (the fleet bounds their concurrency)
FIRST_WAIT_S = 5.0  # a first load waits this long at most for the first sweep
STATES = ("serving", "halted", "unreachable", "unknown")
ZONE_LABELS = ("zone", "topology.kubernetes.io/zone")


@dataclass
class Entry:
    status: AgentStatus
    checked: float  # loop time of the GetInfo
    generation: int  # the agent's fault generation from datagrams then (-1: none known)

    @property
    def state(self) -> str:
        s = self.status
        if s.info is None:
            return "unreachable"
        return "halted" if s.info.halted else "serving"


class FleetView:
    def __init__(self, fleet: Fleet, refresh_s: float = REFRESH_S) -> None:
        self.fleet = fleet
        self.refresh_s = refresh_s
        self.order = sorted(fleet.refs)
        self.entries: dict[str, Entry] = {}
        self.last_seen: dict[str, float] = {}  # loop time of the last sign of life
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> FleetView:
        """On the fleet's loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet-view")
        return self

    async def stop(self) -> None:
        await cancel(self._task)

    def _stale(self, address: str, now: float) -> bool:
        e = self.entries.get(address)
        if e is None:
            return True
        seen = self.fleet.keeper.seen.get(address)
        if seen is not None:
            at, generation = seen
            self.last_seen[address] = max(self.last_seen.get(address, 0.0), at)
            if generation != e.generation and e.generation >= 0:
                return True  # its faults changed: the counts are old
            if e.generation < 0:
                e.generation = generation  # first answer since the GetInfo
            if now - at < self.refresh_s and e.status.reachable:
                return False  # up, and nothing changed: no need to ask
        return now - e.checked >= self.refresh_s

    async def sweep(self) -> int:
        """GetInfo on the stale agents (at most BATCH); how many were asked."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        stale = [a for a in self.order if self._stale(a, now)][:BATCH]
        if stale:
            statuses = await self.fleet.astatuses(stale)
            at = loop.time()
            for a, st in statuses.items():
                seen = self.fleet.keeper.seen.get(a)
                self.entries[a] = Entry(st, at, seen[1] if seen else -1)
                if st.reachable:
                    self.last_seen[a] = at
        return len(stale)

    async def _run(self) -> None:
        while True:
            asked = await self.sweep()
            if asked < BATCH:
                self._ready.set()  # every agent has been asked once
            # The first pass back to back; after it, BATCH a sweep at most: a
            # run that just injected on 10,000 agents moved every generation,
            # and its leases share this loop with the GetInfo calls.
            await asyncio.sleep(0 if asked == BATCH and not self._ready.is_set() else SWEEP_S)

    async def first_pass(self) -> None:
        """Until every agent has been asked once."""
        await self._ready.wait()

    async def page(
        self, selector: Selector | None, state: str, page: int, per_page: int
    ) -> dict[str, Any]:
        """One page of agents (1-based), with totals over all that match."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_WAIT_S):
                await self.first_pass()
        now = asyncio.get_running_loop().time()
        matched: list[str] = []
        by_state: Counter[str] = Counter()
        by_zone: Counter[str] = Counter()
        by_version: Counter[str] = Counter()
        for a in self.order:
            e = self.entries.get(a)
            st = e.state if e is not None else "unknown"
            labels = e.status.labels if e is not None else dict(self.fleet.refs[a].labels)
            if selector is not None and not selector.matches(labels):
                continue
            if state and st != state:
                continue
            matched.append(a)
            by_state[st] += 1
            by_zone[next((labels[k] for k in ZONE_LABELS if k in labels), "")] += 1
            info = e.status.info if e is not None else None
            by_version[info.version if info is not None else ""] += 1
        first = (page - 1) * per_page
        rows = []
        for a in matched[first : first + per_page]:
            e = self.entries.get(a)
            row = (
                e.status.as_dict()
                if e is not None
                else AgentStatus(self.fleet.refs[a], None, "not asked yet").as_dict()
            )
            row["state"] = e.state if e is not None else "unknown"
            row["checked_s_ago"] = round(now - e.checked, 1) if e is not None else None
            seen = self.last_seen.get(a)
            row["seen_s_ago"] = round(now - seen, 1) if seen is not None else None
            rows.append(row)
        return {
            "agents": rows,
            "total": len(matched),
            "page": page,
            "per_page": per_page,
            "pages": max(1, -(-len(matched) // per_page)),
            "summary": {
                "by_state": {s: by_state[s] for s in STATES if by_state[s]},
                "by_zone": dict(sorted(by_zone.items())),
                "by_version": dict(sorted(by_version.items())),
            },
            "inventory": len(self.order),
        }
