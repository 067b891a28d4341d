"""A run whose replica is gone (a previous service process, or another
replica that stopped heartbeating) was cut off. It is marked interrupted in
the history, and each of its faults is looked up on its agent, so the journal
says per agent what became of them (reverted by lease expiry, normally)
rather than assuming it. The journal is the run's file if this replica can
read it, else the snapshot its replica last heartbeat into the store."""

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
from controller.store import History, LiveRun

ENDED = (
    "interrupted: the controller stopped mid-run (its process {replica} ended; replica {me}"
    " marked it at {at}); each agent reverted this run's faults by itself when its lease expired"
)
SILENT = (
    "interrupted: replica {replica} driving it stopped heartbeating ({silent}); replica {me}"
    " marked it at {at}; each agent reverted this run's faults by itself when its lease expired"
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


def _journal(live: LiveRun) -> dict[str, Any]:
    for text in (_read(Path(live.journal_path)), live.journal):
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return {
        "status": "running",
        "experiment": {"title": live.title},
        "start": live.started,
        "extensions": [{"name": "brownout", "run_id": live.run_id, "agents": {}}],
    }


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def interrupt(live: LiveRun, history: History, fleet: Fleet, reason: str, journals: Path) -> None:
    """Mark a cut-off run interrupted (reason's {at} is now), with what its
    agents say of its faults; its journal is rewritten where it was, or into
    `journals` if that file is not on this host."""
    journal = _journal(live)
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
    b["reason"] = reason.format(at=at)
    b["interrupted_by_restart"] = True
    if live.replica:
        b["replica"] = live.replica
    journal["status"] = "interrupted"
    journal["end"] = journal.get("end") or at
    journal["extensions"] = [
        b if e.get("name") == "brownout" else e for e in journal.get("extensions", [])
    ]
    path = Path(live.journal_path)
    if not path.parent.is_dir():
        path = journals / path.name
    jr.write(journal, path)
    history.record(journal, path)
