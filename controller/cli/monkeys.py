"""`brownout monkey list|add|remove|pause|resume|plan|history`, against a server (--server
or BROWNOUT_SERVER): the monkeys `brownout serve` keeps, a day's draw (which
groups, at what times, which members are usable and why not) without
touching anything, and the tracker."""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from controller.cli import argtypes
from controller.cli.remote import Client
from controller.cli.render import table
from controller.cli.schedules import NAME
from controller.errors import ConfigError

API = "/api/v1/monkeys"


def _day(text: str) -> str:
    return date.fromisoformat(text.strip()).isoformat()


def add_parser(sub: Any) -> None:
    p = sub.add_parser("monkey", help="the server's monkeys: random kills by group (--server)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every monkey")
    add = actions.add_parser("add", help="add or replace a monkey from a file")
    add.add_argument("file", type=argtypes.existing_file, help="a monkey in YAML or JSON")
    for action, what in (("remove", "remove a monkey"), ("pause", "pause a monkey: no kills"),
                         ("resume", "resume a paused monkey")):  # fmt: skip
        actions.add_parser(action, help=what).add_argument("name", type=NAME)
    plan = actions.add_parser("plan", help="a day's draw, touching nothing")
    plan.add_argument("name", type=NAME)
    plan.add_argument("--day", type=argtypes.checked(_day), help="YYYY-MM-DD (default today)")
    hist = actions.add_parser("history", help="the tracker: every slot and what became of it")
    hist.add_argument("name", type=NAME)
    for a in actions.choices.values():
        a.add_argument("--json", action="store_true", help="print the server's JSON")


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ConfigError(str(path), "expected one monkey (a mapping with a name)")
    return doc


def _plan_text(plan: dict[str, Any]) -> str:
    lines = [
        f"{plan['day']}: " + (f"no kills ({plan['closed']})" if plan["closed"] else "a workday")
    ]
    for g in plan["groups"]:
        kills = ", ".join(k["at"][11:19] for k in g["kills"])
        members = ", ".join(
            m + (f" ({plan['unusable'][m]})" if m in plan["unusable"] else "") for m in g["members"]
        )
        lines.append(f"  {g['group']}: {kills or g['why_not']}  members: {members}")
    return "\n".join(lines)


def main(c: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        out = c.call("GET", API)
        lines = [f"{m['name']}  [{'paused' if m['paused'] else 'active'}] from {m['source']}"
                 for m in out["monkeys"]]  # fmt: skip
    elif args.action == "add":
        doc = _load(args.file)
        out = c.call("PUT", f"{API}/{doc['name']}", {"monkey": doc})
        lines = [f"stored monkey {out['name']}: {', '.join(out['actions'])}"]
    elif args.action == "remove":
        out = c.call("DELETE", f"{API}/{args.name}")
        lines = [f"removed monkey {out['name']}"]
    elif args.action in ("pause", "resume"):
        out = c.call("POST", f"{API}/{args.name}/{args.action}")
        lines = [f"monkey {out['name']} {'paused' if out['paused'] else 'resumed'}"]
    elif args.action == "plan":
        if args.day:
            out = c.call("GET", f"{API}/{args.name}/plan/{args.day}")
        else:
            out = c.call("GET", f"{API}/{args.name}")["plan"]
        lines = [_plan_text(out)]
    else:
        out = c.call("GET", f"{API}/{args.name}")["kills"]
        rows = [["SLOT", "DUE", "OUTCOME", "AGENT", "RUN", "WHY"]]
        rows += [[k["slot"], k["due"][:19], k["outcome"], k["agent"] or "-", k["run_id"] or "-",
                  k["detail"]] for k in out]  # fmt: skip
        lines = [table(rows)]
    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return 0
