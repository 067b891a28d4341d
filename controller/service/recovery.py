"""At startup: the runs a previous service process left live were cut off by
its end. Each is marked interrupted in the history, and each of its faults is
looked up on its agent, so the journal says per agent what became of them
(reverted by lease expiry, normally) rather than assuming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.client import rpc_error
from controller.agents.fleet import Fleet
from controller.agents.names import reason_name, state_name
from controller.agents.tls import ClientTls
from controller.experiments import journal as jr
from controller.experiments.history import History
from controller.experiments.probes import now_iso
from controller.service.store import LiveRun, ServiceStore

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


def recover(
    store: ServiceStore, history: History, timeout: float, tls: ClientTls | None
) -> list[str]:
    """Mark every run left live as interrupted; the run ids."""
    done = []
    for live in store.live_runs():
        _recover_one(live, history, timeout, tls)
        store.run_ended(live.run_id)
        done.append(live.run_id)
    return done


def _recover_one(live: LiveRun, history: History, timeout: float, tls: ClientTls | None) -> None:
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
    wanted = [a for a, ids in faults.items() if ids]
    if wanted:
        with Fleet(inventory.build(agents=wanted), timeout=timeout, tls=tls) as fleet:
            seen = fleet.map(lambda c: _check(c, faults[c.address]))
        for a, o in seen.items():
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
