"""`brownout maturity`: where the team stands on the practice's maturity
model, from the controller's own history (the local store, --database, or
the server's with --server), each level's evidence, and the next step."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.cli import argtypes
from controller.experiments.selection import parse_selector
from controller.practice import maturity
from controller.service import practice
from controller.store import open_store

if TYPE_CHECKING:  # remote imports the commands, which import this module
    from controller.cli.remote import Client


def _selector(text: str) -> str:
    parse_selector(text, "--production")
    return text


def add_practice_options(p: argparse.ArgumentParser) -> None:
    """The options `brownout maturity` and `brownout serve` weigh the history with."""
    p.add_argument(
        "--production",
        type=argtypes.checked(_selector),
        default=practice.PRODUCTION,
        metavar="SELECTOR",
        help=f"the labels of production agents (default {practice.PRODUCTION!r})",
    )
    p.add_argument(
        "--practice",
        type=argtypes.existing_file,
        default=None,
        metavar="FILE",
        help="what the team declares: on-call, postmortems, game days held (YAML)",
    )


def add_parser(sub: Any, data_dir_option: Any) -> None:
    p = sub.add_parser("maturity", help="the team's level on the practice's maturity model")
    data_dir_option(p)
    add_practice_options(p)
    p.add_argument(
        "--days",
        type=argtypes.int_in(1, 3660),
        default=maturity.WINDOW_DAYS,
        help=f"the window weighed (default {maturity.WINDOW_DAYS} days)",
    )
    p.add_argument("--json", action="store_true")


def render(a: dict[str, Any]) -> str:
    lines = [
        f"level {a['level']}: {a['name']}  ({a['since']} .. {a['until']},"
        f" production is {a['production']!r})",
        f"next step: {a['next_step']}",
    ]
    for lv in a["levels"]:
        lines.append(f"  [{'x' if lv['met'] else ' '}] {lv['number']}. {lv['name']}")
        lines += [f"        {e}" for e in lv["evidence"]]
    for key, value in a["declared"].items():
        lines.append(f"  declared {key}: {value}")
    return "\n".join(lines)


def _show(a: dict[str, Any], as_json: bool) -> int:
    print(json.dumps(a, indent=2) if as_json else render(a))
    return 0


def main(args: argparse.Namespace) -> int:
    store = open_store(args.data_dir, args.database)
    try:
        a = practice.assess(store, datetime.now(UTC).date(), practice.read_practice(args.practice),
                            args.production, args.days)  # fmt: skip
    finally:
        store.close()
    return _show(a, args.json)


def remote(c: Client, args: argparse.Namespace) -> int:
    query = f"?days={args.days}"
    return _show(c.call("GET", f"/api/v1/maturity{query}"), args.json)
