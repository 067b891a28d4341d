"""`brownout gameday run|dry-run|list|status|pause|resume|advance|skip|abort|report`,
against a server (--server or BROWNOUT_SERVER): the server runs the day, so
the console, the CLI and every replica see the same state, and the
commander's controls work from any of them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from controller.cli import argtypes
from controller.cli.remote import Client
from controller.cli.render import table
from controller.errors import ConfigError
from controller.gamedays import report as gd_report
from controller.store import StoredGameDay

API = "/api/v1/gamedays"
CONTROLS = ("pause", "resume", "advance", "skip", "abort")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("gameday", help="game days: scenarios at offsets, a commander (--server)")
    actions = p.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="start a game day from its plan, and follow it")
    run.add_argument("plan", type=argtypes.existing_file, help="the plan (YAML)")
    run.add_argument("--detach", action="store_true", help="start it and return")
    dry = actions.add_parser("dry-run", help="the schedule in wall-clock time, every check")
    dry.add_argument("plan", type=argtypes.existing_file, help="the plan (YAML)")
    actions.add_parser("list", help="the game days, newest first")
    for action, what in [
        ("status", "a game day's scenarios as they stand"),
        *((c, f"the commander's control: {c}") for c in CONTROLS),
    ]:
        actions.add_parser(action, help=what).add_argument("id", type=argtypes.text, metavar="ID")
    note = actions.add_parser("note", help="the scribe's note for the day, at its time")
    note.add_argument("id", type=argtypes.text, metavar="ID")
    note.add_argument("text", type=argtypes.text, help="the observation")
    rep = actions.add_parser("report", help="the game day's report")
    rep.add_argument("id", type=argtypes.text, metavar="ID")
    rep.add_argument("--format", choices=("html", "md", "json"), default="html")
    rep.add_argument("-o", "--output", type=argtypes.file_in_existing_dir, metavar="FILE")
    for a in actions.choices.values():
        if a.prog.split()[-1] != "report":
            a.add_argument("--json", action="store_true", help="print the server's JSON")


def load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(str(path), "expected a game-day plan (a mapping)")
    return doc


def status_text(g: dict[str, Any]) -> str:
    rows = [["SCENARIO", "AT", "STATE", "RUN", "CRITERIA", "WHY"]]
    for s in g["scenarios"]:
        verdicts = s.get("verdicts") or []
        passed = sum(1 for v in verdicts if v["passed"] is True)
        rows.append(
            [
                s["name"],
                f"T+{s['at']:g}s",
                f"{s['state']} {s.get('status', '')}".strip(),
                s.get("run_id") or "-",
                f"{passed}/{len(s['criteria'])}" if verdicts else "-",
                s.get("reason") or "-",
            ]
        )
    head = f"{g['id']}  {g['title']}  [{g['state']}]  T+{g.get('elapsed_s', 0):g}s"
    return head + "\n" + table(rows)


def _follow(c: Client, gid: str) -> dict[str, Any]:
    seen: dict[str, str] = {}
    while True:
        g = c.call("GET", f"{API}/{gid}")
        for s in g["scenarios"]:
            if seen.get(s["name"]) != s["state"]:
                seen[s["name"]] = s["state"]
                print(
                    f"{time.strftime('%H:%M:%S')}  {s['name']}: {s['state']}"
                    + (f" (run {s['run_id']})" if s.get("run_id") else "")
                    + (f": {s['reason']}" if s.get("reason") else ""),
                    flush=True,
                )
        if g["state"] in ("ended", "aborted"):
            return dict(g)
        time.sleep(1)


def report(c: Client, gid: str, fmt: str, output: Path | None) -> int:
    g = c.call("GET", f"{API}/{gid}")
    journals = {
        s["run_id"]: c.call("GET", f"/api/v1/runs/{s['run_id']}")
        for s in g["scenarios"]
        if s.get("run_id")
    }
    stored = StoredGameDay(
        g["id"],
        g["title"],
        g.get("plan") or {"roles": g.get("roles", {})},
        g["state"],
        g["by"],
        g["started"],
        g["ended"],
        g["scenarios"],
        g.get("notes") or [],
    )
    d = gd_report.build(stored, journals)
    text = {"html": gd_report.html, "md": gd_report.markdown, "json": gd_report.as_json}[fmt](d)
    if output is None:
        print(text)
    else:
        output.write_text(text)
        print(f"wrote {output}", file=sys.stderr)
    return 0


def main(c: Client, args: argparse.Namespace) -> int:
    if args.action == "report":
        return report(c, args.id, args.format, args.output)
    if args.action == "run":
        g = c.call("POST", API, {"plan": load(args.plan)})
        print(f"game day {g['id']} started: {g['title']}", flush=True)
        if args.detach:
            return 0
        g = _follow(c, g["id"])
        print(status_text(g))
        verdicts = [v for s in g["scenarios"] for v in s.get("verdicts") or []]
        ok = g["state"] == "ended" and all(v["passed"] is True for v in verdicts)
        return 0 if ok else 1
    if args.action == "dry-run":
        out = c.call("POST", f"{API}/dry-run", {"plan": load(args.plan)})
        lines = [f"{out['title']}: {len(out['scenarios'])} scenario(s), if started now"]
        for s in out["scenarios"]:
            fleet = out["agents"].get(s["name"], {})
            ok = "ok" if fleet.get("ok") else f"WOULD NOT START: {fleet.get('error', '')}"
            lines.append(
                f"  {s['at'][11:19]}  T+{s['offset_s']:g}s  {s['name']}: {s['title']}"
                f" ({', '.join(s['faults']) or 'no fault'}); fleet {ok}"
            )
            lines += [f"      criterion: {c_}" for c_ in s["criteria"]]
    elif args.action == "list":
        out = c.call("GET", API)
        rows = [["ID", "TITLE", "STATE", "STARTED", "BY"]]
        rows += [
            [g["id"], g["title"], g["state"], g["started"][:19], g["by"]] for g in out["gamedays"]
        ]
        lines = [table(rows)]
    elif args.action == "note":
        out = c.call("POST", f"{API}/{args.id}/notes", {"text": args.text})
        lines = [f"noted in game day {out['gameday_id']} at {out['at']}"]
    elif args.action == "status":
        out = c.call("GET", f"{API}/{args.id}")
        lines = [status_text(out)]
    else:
        out = c.call("POST", f"{API}/{args.id}/{args.action}")
        lines = [status_text(out)]
    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return 0
