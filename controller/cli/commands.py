"""`brownout agents | run | history | show | serve | token | halt`: commands over many agents.

Agents come from --inventory FILE, --dns NAME[:PORT] and repeated --agent
flags given after the subcommand; with none of those, the global --agent
(one address) is the fleet, so `brownout --agent ADDR halt` keeps working.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from controller.agents import inventory
from controller.agents import tls as tls_config
from controller.agents.fleet import Fleet
from controller.cli import argtypes, maturity, report, serve
from controller.cli.progress import Console
from controller.cli.render import agents_table, halt_table, table
from controller.errors import ConfigError
from controller.experiments import journal as jr
from controller.experiments import parse as exp
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.progress import Quiet
from controller.experiments.records import RunStatus
from controller.experiments.runner import Runner, RunOptions
from controller.experiments.window import WindowClosed
from controller.schedules.model import NAME as SCHEDULE_NAME
from controller.store import History, NotFound, Store, open_store

T = TypeVar("T")
COMMANDS = ("agents", "run", "history", "show", "serve", "token", "halt", "maturity", "report")
EXIT = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.ABORTED: 3,
    RunStatus.INTERRUPTED: 130,
}
# failed because the faults did not run as planned (an injection failed, a lease
# was lost, a fault ended early): the hypothesis was not put to the test.
EXIT_FAULT_ERROR = 4


def exit_code(journal: dict[str, Any]) -> int:
    ext = jr.brownout(journal)
    if journal["status"] == RunStatus.FAILED and ext.get("fault_problems"):
        return EXIT_FAULT_ERROR
    return EXIT[RunStatus(journal["status"])]


def default_data_dir() -> Path:
    """BROWNOUT_DATA_DIR, else $XDG_STATE_HOME/brownout or ~/.local/state/brownout."""
    if "BROWNOUT_DATA_DIR" in os.environ:
        return _from_env("BROWNOUT_DATA_DIR", argtypes.dir_path)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "brownout"


def _from_env(name: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(os.environ[name])
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(name, str(exc)) from None


def add_fleet_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agent",
        dest="fleet_agents",
        action="append",
        type=argtypes.agent_address,
        default=[],
        metavar="ADDR",
        help="an agent host:port (repeatable)",
    )
    p.add_argument(
        "--inventory",
        type=argtypes.existing_file,
        default=None,
        help="YAML inventory of agents and labels (env BROWNOUT_INVENTORY)",
    )
    p.add_argument(
        "--dns",
        action="append",
        type=argtypes.dns_name,
        default=[],
        metavar="NAME[:PORT]",
        help="a name resolving to many agents, e.g. a headless Service (repeatable)",
    )


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=argtypes.dir_path,
        default=None,
        help="journals and brownout.db (env BROWNOUT_DATA_DIR, default ~/.local/state/brownout)",
    )
    p.add_argument(
        "--database",
        type=argtypes.database,
        default=None,
        metavar="DSN",
        help="keep the history and the service's state in PostgreSQL instead of"
        " DATA_DIR/brownout.db: postgresql://USER@HOST:PORT/DBNAME (env BROWNOUT_DATABASE;"
        " the password from PGPASSWORD or ~/.pgpass)",
    )


def add_subcommands(sub: Any) -> None:
    agents = sub.add_parser("agents", help="list the fleet's agents with GetInfo for each")
    add_fleet_options(agents)
    agents.add_argument("--json", action="store_true")

    run = sub.add_parser("run", help="run an experiment file across the fleet")
    run.add_argument("experiment", type=argtypes.path, help="experiment file (YAML or JSON)")
    add_fleet_options(run)
    _data_dir_option(run)
    run.add_argument("--dry-run", action="store_true", help="check everything, inject nothing")
    run.add_argument("--override-window", action="store_true", help="run outside the run window")
    run.add_argument(
        "--journal",
        type=argtypes.file_in_existing_dir,
        help="journal path (default DATA_DIR/journals/RUN.json)",
    )
    run.add_argument(
        "--seed",
        type=argtypes.int_in(0, 2**63 - 1),
        help="seed for the random target pick (recorded)",
    )
    run.add_argument(
        "--metrics",
        type=argtypes.listen_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics during the run",
    )
    run.add_argument("--json", action="store_true", help="no progress; print the journal as JSON")

    history = sub.add_parser("history", help="past runs from the SQLite history")
    _data_dir_option(history)
    history.add_argument("--limit", type=argtypes.int_in(1, 100_000), default=20)
    history.add_argument("--status", choices=[str(s) for s in EXIT])
    history.add_argument("--json", action="store_true")
    history.add_argument(
        "--schedule",
        type=argtypes.checked(schedule_name),
        help="what became of a schedule's occurrences: its rotation, and why each ran or not",
    )

    show = sub.add_parser("show", help="one past run: summary, or its journal with --json")
    show.add_argument("run_id", type=argtypes.text, metavar="RUN")
    _data_dir_option(show)
    show.add_argument("--json", action="store_true")

    maturity.add_parser(sub, _data_dir_option)
    report.add_parser(sub, _data_dir_option)
    serve.add_parsers(sub, add_fleet_options, _data_dir_option)


def resolve_env(args: argparse.Namespace) -> None:
    """Fill --inventory and --data-dir from their variables, checked like the flags."""
    if "inventory" in args and args.inventory is None and "BROWNOUT_INVENTORY" in os.environ:
        args.inventory = _from_env("BROWNOUT_INVENTORY", argtypes.existing_file)
    if "data_dir" in args and args.data_dir is None:
        args.data_dir = default_data_dir()
    if "database" in args and args.database is None and "BROWNOUT_DATABASE" in os.environ:
        args.database = _from_env("BROWNOUT_DATABASE", argtypes.database)


def _refs(args: argparse.Namespace) -> list[inventory.AgentRef]:
    if args.fleet_agents or args.inventory or args.dns:
        return inventory.build(args.inventory, args.dns, args.fleet_agents)
    return inventory.build(agents=[args.agent])


def client_tls(args: argparse.Namespace) -> tls_config.ClientTls | None:
    """TLS flags (if the CLI defines them) or BROWNOUT_TLS_* from the environment."""
    try:
        return tls_config.from_values(
            getattr(args, "tls_ca", None),
            getattr(args, "tls_cert", None),
            getattr(args, "tls_key", None),
            getattr(args, "tls_server_name", "") or "",
        )
    except ValueError as exc:
        raise ConfigError("tls", str(exc)) from None


def _fleet(args: argparse.Namespace) -> Fleet:
    return Fleet(_refs(args), timeout=args.timeout, tls=client_tls(args))


def _signals(handler: Callable[[str], None]) -> dict[int, Any]:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        handler(signal.Signals(signum).name)

    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore(previous: dict[int, Any]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)


def cmd_agents(args: argparse.Namespace) -> int:
    with _fleet(args) as fleet:
        statuses = list(fleet.statuses().values())
    if args.json:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        print(agents_table(statuses))
    return 0 if all(s.reachable for s in statuses) else 1


def cmd_halt(args: argparse.Namespace) -> int:
    with _fleet(args) as fleet:
        outcomes = fleet.halt(args.latch, args.reason)
    print(halt_table(outcomes))
    return 0 if all(o.ok for o in outcomes.values()) else 2


def _options(args: argparse.Namespace, history: History) -> RunOptions:
    options = RunOptions(seed=args.seed, override_window=args.override_window, history=history)
    options.journal_path = args.journal or args.data_dir / "journals" / f"{options.run_id}.json"
    return options


def cmd_run(args: argparse.Namespace) -> int:
    experiment = exp.load(args.experiment)
    reporter = Quiet() if args.json else Console()
    metrics = ControllerMetrics()
    if args.metrics:
        reporter.event(f"metrics on {args.metrics} (port {metrics.serve(args.metrics)})")
    history = open_store(args.data_dir, args.database).history
    with _fleet(args) as fleet:
        options = _options(args, history)
        runner = Runner(experiment, fleet, options, reporter, metrics)
        if args.dry_run:
            report = runner.dry_run()
            print(json.dumps(report, indent=2, default=str) if args.json else _dry_text(report))
            return 0 if report["ok"] else 1
        try:
            reporter.event(runner.check_window())
        except WindowClosed as exc:
            print(f"brownout: refusing to start: {exc}", file=sys.stderr)
            return 2
        reporter.event(f"run {options.run_id}: {experiment.title}; journal {options.journal_path}")
        _signals(runner.interrupt)
        journal = runner.run()
        # Reverts are done; a late Ctrl-C must not cut the summary or change the exit code.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
    print(jr.dumps(journal) if args.json else jr.summary(journal))
    return exit_code(journal)


def _dry_text(report: dict[str, Any]) -> str:
    lines = [f"dry run: {report['title']}: {'OK' if report['ok'] else 'NOT OK'}"]
    lines.append(f"window    {report.get('window', '-')}")
    if "error" in report:
        lines.append(f"error     {report['error']}")
        return "\n".join(lines)
    sel = report["selection"]
    if sel is None:
        lines.append("targets   none: the experiment injects no fault, no agent is asked")
    else:
        lines.append(
            f"targets   {len(sel['targets'])} of {sel['fleet_size']} (mode {sel['mode']},"
            f" seed {sel['seed']}): {', '.join(sel['targets']) or '-'}"
        )
    for step in report["steps"]:
        lines.append(f"step {step['index'] + 1}    {step['percent']:g}% -> {len(step['agents'])}")
    for f in report["faults"]:
        lines.append(f"fault     {f['action']}: {f['kind']} {f['spec']} for {f['duration']:g}s")
    for address, a in report["agents"].items():
        verdict = a["skipped"] or "; ".join(a["problems"]) or ("ok" if a["target"] else "-")
        lines.append(f"agent     {address}: {verdict}")
    before = report.get("steady_state_before")
    if before is not None:
        lines.append(f"before    steady state {'met' if before['steady_state_met'] else 'NOT met'}")
    return "\n".join(lines)


def schedule_name(text: str) -> str:
    if not SCHEDULE_NAME.match(text):
        raise ValueError(f"{text!r} is not a schedule name (lower-case letters, digits, . _ -)")
    return text


def cmd_schedule_history(args: argparse.Namespace) -> int:
    store = open_store(args.data_dir, args.database)
    occs = store.schedules.occurrences(args.schedule, args.limit)
    if args.status:
        occs = [o for o in occs if o.run_id and _status(store, o.run_id) == args.status]
    if args.json:
        print(json.dumps([o.as_dict() for o in occs], indent=2))
        return 0
    rows = [["DUE", "OUTCOME", "EXPERIMENT", "RUN", "STATUS", "WHY"]]
    for o in occs:
        outcome = o.outcome + (f" ({o.kind})" if o.kind else "")
        status = _status(store, o.run_id) if o.run_id else "-"
        rows.append([o.due[:19], outcome, o.experiment or "-", o.run_id or "-", status, o.detail])
    print(table(rows))
    return 0


def _status(store: Store, run_id: str) -> str:
    try:
        return store.history.get(run_id)[0].status
    except NotFound:
        return "running or lost"


def cmd_history(args: argparse.Namespace) -> int:
    if args.schedule:
        return cmd_schedule_history(args)
    runs = open_store(args.data_dir, args.database).history.runs(args.limit, args.status)
    if args.json:
        print(json.dumps([r.__dict__ for r in runs], indent=2))
        return 0
    rows = [["RUN", "STARTED", "STATUS", "TARGETS", "DURATION", "TITLE", "REASON"]]
    for r in runs:
        rows.append(
            [
                r.run_id,
                r.started[:19],
                r.status + (" (deviated)" if r.deviated else ""),
                str(r.targets),
                "-" if r.duration is None else f"{r.duration:.1f}s",
                r.title,
                r.reason or "-",
            ]
        )
    print(table(rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        run, journal = open_store(args.data_dir, args.database).history.get(args.run_id)
    except NotFound as exc:
        print(f"brownout: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(jr.dumps(journal))
    else:
        print(jr.summary(journal))
        print(f"journal   {run.journal_path}")
    return 0


def main(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "agents": cmd_agents,
        "halt": cmd_halt,
        "run": cmd_run,
        "history": cmd_history,
        "show": cmd_show,
        "serve": lambda a: serve.cmd_serve(a, _refs(a), client_tls(a)),
        "token": serve.cmd_token,
        "maturity": maturity.main,
        "report": report.main,
    }
    try:
        resolve_env(args)
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"brownout: {exc}", file=sys.stderr)
        return 2
