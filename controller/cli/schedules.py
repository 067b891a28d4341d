"""`brownout schedules list|add|pause|resume|remove|next`, against a server
(--server or BROWNOUT_SERVER): the schedules `brownout serve` keeps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from brownout.units import parse_percent
from controller.cli import argtypes
from controller.cli.remote import Client
from controller.errors import ConfigError
from controller.schedules import blackouts, model
from controller.schedules.triggers import Cron, zone

API = "/api/v1/schedules"


def _name(text: str) -> str:
    if not model.NAME.match(text):
        raise ValueError(f"{text!r}: lower-case letters, digits, '.', '_', '-' (1-63)")
    return text


def _cron(text: str) -> str:
    return Cron.parse(text, "UTC", "cron").expression


def _zone(text: str) -> str:
    zone(text, "timezone")
    return text


def _blackout(text: str) -> str:
    blackouts.parse(text, "blackout")
    return text


def _percent(text: str) -> str:
    if not 0 < parse_percent(text) <= 100:
        raise ValueError(f"{text!r}: a share of the fleet above 0, at most 100%")
    return text


NAME = argtypes.checked(_name)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("schedules", help="the server's schedules (needs --server)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every schedule and its next occurrence")
    add = actions.add_parser("add", help="add or replace a schedule")
    add.add_argument("name", type=NAME, nargs="?", help="default: the file's name")
    add.add_argument("--file", type=argtypes.existing_file, help="a schedule in YAML or JSON")
    add.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        type=NAME,
        help="a stored experiment (repeat: the schedule rotates through them)",
    )
    trigger = add.add_mutually_exclusive_group()
    trigger.add_argument(
        "--cron", type=argtypes.checked(_cron), help="5 fields, or 6 with seconds first"
    )
    trigger.add_argument("--every", type=argtypes.positive_duration, help="an interval")
    add.add_argument(
        "--timezone",
        type=argtypes.checked(_zone),
        help="of the cron expression and the blackouts (default UTC)",
    )
    add.add_argument(
        "--blast-radius",
        type=argtypes.checked(_percent),
        help="the cap on each run's share of the fleet, e.g. 5%%",
    )
    spread = add.add_mutually_exclusive_group()
    spread.add_argument("--jitter", type=argtypes.positive_duration, help="a random delay")
    spread.add_argument(
        "--spread", action="store_true", help="a random time before the next occurrence"
    )
    add.add_argument("--max-runs-per-day", type=argtypes.int_in(1))
    add.add_argument("--concurrency", choices=["forbid", "allow", "replace"])
    add.add_argument("--starting-deadline", type=argtypes.positive_duration)
    add.add_argument("--history-limit", type=argtypes.int_in(1))
    add.add_argument(
        "--blackout",
        action="append",
        default=[],
        metavar="SPEC",
        type=argtypes.checked(_blackout),
        help="2026-12-24, 2026-12-20..2027-01-03, 12-20..01-03,"
        " 2026-12-06T14:00..2026-12-06T18:00 or an RRULE (repeat)",
    )
    add.add_argument("--paused", action="store_true", help="store it paused")
    for action in ("pause", "resume", "remove"):
        a = actions.add_parser(action, help=f"{action} a schedule")
        a.add_argument("name", type=NAME)
    nxt = actions.add_parser("next", help="the next occurrences, and which would be skipped")
    nxt.add_argument("name", type=NAME)
    nxt.add_argument("--count", type=argtypes.int_in(1, 1000), default=10)
    for a in actions.choices.values():
        a.add_argument("--json", action="store_true", help="print the server's JSON")  # fmt: skip


def _doc(args: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if args.file is not None:
        try:
            loaded = yaml.safe_load(Path(args.file).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(str(args.file), f"cannot read: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(str(args.file), "expected one schedule (a mapping)")
        doc.update(loaded)
    flags = {
        "cron": args.cron,
        "every": args.every,
        "timezone": args.timezone,
        "blast-radius": args.blast_radius,
        "jitter": args.jitter,
        "max-runs-per-day": args.max_runs_per_day,
        "concurrency": args.concurrency,
        "starting-deadline": args.starting_deadline,
        "history-limit": args.history_limit,
    }
    doc.update({k: v for k, v in flags.items() if v is not None})
    if args.experiment:
        doc["experiments"] = args.experiment
    if args.blackout:
        doc["blackouts"] = [*doc.get("blackouts", []), *args.blackout]
    if args.spread:
        doc["spread"] = True
    if args.paused:
        doc["paused"] = True
    name = args.name or doc.get("name")
    if not name:
        raise ConfigError("name", "give the schedule a name (argument, or name: in the file)")
    doc["name"] = name
    return doc


def _when(o: dict[str, Any]) -> str:
    return f"{o['at']}  {'runs' if o['runs'] == 'yes' else 'skipped: ' + o['skip']}"


def main(c: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        out = c.call("GET", API)
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        for s in out["schedules"]:
            state = "paused" if s.get("paused") else "active"
            nxt = _when(s["next"]) if s.get("next") else s.get("error", "")
            print(f"{s['name']}  [{state}] {s.get('trigger', '')}  next: {nxt}")
        return 0
    if args.action == "add":
        doc = _doc(args)
        out = c.call("PUT", f"{API}/{doc['name']}", {"schedule": doc})
    elif args.action in ("pause", "resume"):
        out = c.call("POST", f"{API}/{args.name}/{args.action}")
    elif args.action == "remove":
        out = c.call("DELETE", f"{API}/{args.name}")
    else:
        out = c.call("GET", f"{API}/{args.name}/next?count={args.count}")
        if not args.json:
            for o in out["next"]:
                print(_when(o))
            return 0
    print(json.dumps(out, indent=2) if args.json else _brief(out))
    return 0


def _brief(out: dict[str, Any]) -> str:
    parts = [f"{k}: {v}" for k, v in out.items()]
    return ", ".join(parts)
