"""At startup: the runs a previous service process left live were cut off by
its end. Each is marked interrupted in the history, and each of its faults is
looked up on its agent, so the journal says per agent what became of them
(reverted by lease expiry, normally) rather than assuming it."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc

from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient, rpc_error
from controller.agents.fleet import Fleet, Outcome
from controller.agents.names import reason_name, state_name
from controller.experiments import journal as jr
from controller.experiments.probes import now_iso
from controller.store import History, LiveRun, ServiceState

REASON = (
    "interrupted: the controller stopped mid-run (restarted at {at}); each agent reverted"
    " this run's faults by itself when its lease expired"
)


async def _check(c: AsyncAgentClient, fault_ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for fid in fault_ids:
        try:
            f = await c.get_fault(fid)
        except grpc.RpcError as exc:
            out[fid] = {"error": rpc_error(exc)}
            continue
        out[fid] = {
            "state": state_name(f.state),
            "end_reason": reason_name(f.end_reason) if f.end_reason else "",
        }
    return out


def recover(store: ServiceState, history: History, fleet: Fleet) -> list[str]:
    """Mark every run left live as interrupted; the run ids. Faults are looked
    up through the service's fleet (and agents since dropped from the
    inventory through channels opened for the purpose)."""
    done = []
    for live in store.live_runs():
        _recover_one(live, history, fleet)
        store.run_ended(live.run_id)
        done.append(live.run_id)
    return done


def _lookup(fleet: Fleet, faults: dict[str, list[str]]) -> dict[str, Outcome[Any]]:
    def check(c: AsyncAgentClient) -> Awaitable[dict[str, dict[str, str]]]:
        return _check(c, faults[c.address])

    known = [a for a in faults if a in fleet.refs]
    seen: dict[str, Outcome[Any]] = dict(fleet.map(check, known))
    gone = [a for a in faults if a not in fleet.refs]
    if gone:
        with Fleet.connect(fleet.connection.to(inventory.build(agents=gone))) as extra:
            seen.update(extra.map(check))
    return seen


def _recover_one(live: LiveRun, history: History, fleet: Fleet) -> None:
    path = Path(live.journal_path)
    try:
        journal: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        journal = {
            "status": "running",
            "experiment": {"title": live.title},
            "start": live.started,
            "extensions": [{"name": "brownout", "run_id": live.run_id, "agents": {}}],
        }
    b = jr.brownout(journal)
    agents: dict[str, Any] = b.get("agents") or {}
    faults = {
        a: [f["fault_id"] for f in r.get("faults", []) if f.get("fault_id")]
        for a, r in agents.items()
    }
    wanted = {a: ids for a, ids in faults.items() if ids}
    if wanted:
        for a, o in _lookup(fleet, wanted).items():
            found = o.value or {}
            for f in agents[a].get("faults", []):
                fid = f.get("fault_id")
                if fid:
                    f["after_restart"] = found.get(fid) or {"error": o.error}
    at = now_iso()
    b["reason"] = REASON.format(at=at)
    b["interrupted_by_restart"] = True
    journal["status"] = "interrupted"
    journal["end"] = journal.get("end") or at
    journal["extensions"] = [
        b if e.get("name") == "brownout" else e for e in journal.get("extensions", [])
    ]
    jr.write(journal, path)
    history.record(journal, path)
