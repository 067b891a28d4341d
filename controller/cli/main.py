"""`brownout`: the command-line client for agents and experiments.

`brownout inject KIND ...` stays in the foreground holding a lease: it renews
the lease until the fault ends, and Ctrl-C (or SIGTERM) reverts the fault.
If this process is killed outright, the agent reverts by itself when the
lease's TTL runs out.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TypeVar

import yaml

from brownout import faultspecs, logs
from brownout.addresses import valid_hostname
from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.aioclient import retrying
from controller.agents.fleet import Fleet, Outcome
from controller.agents.tls import from_values
from controller.cli import argtypes, certs, faultflags, gamedays, monkeys, remote, schedules
from controller.cli import commands as fleet_commands
from controller.cli.render import describe_fault, fault_table, info_text
from controller.errors import ConfigError
from controller.experiments.convert import convert
from controller.store import NewerDatabase, StoreUnavailable

T = TypeVar("T")
DEFAULT_AGENT = "127.0.0.1:7070"
LIVE = (pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brownout", description=__doc__)
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="JSON log lines on stderr at this level and above (stdout is for results)",
    )
    p.add_argument(
        "--agent",
        type=argtypes.agent_address,
        default=None,
        help=f"agent host:port (env BROWNOUT_AGENT, default {DEFAULT_AGENT})",
    )
    p.add_argument(
        "--timeout", type=argtypes.positive_duration, default=10.0, help="per-RPC timeout"
    )
    p.add_argument(
        "--server",
        type=argtypes.checked(_server_url),
        default=None,
        help="a brownout serve URL: run, halt and kill-switch go through it (env BROWNOUT_SERVER)",
    )
    p.add_argument(
        "--token-file",
        type=argtypes.existing_file,
        default=None,
        help="API token for --server (env BROWNOUT_TOKEN holds one; default DATA_DIR/local-token)",
    )
    tls = p.add_argument_group("mutual TLS (env BROWNOUT_TLS_CA, _CERT, _KEY, _SERVER_NAME)")
    tls.add_argument(
        "--tls-ca", type=argtypes.existing_file, help="CA that signed the agents' certificates"
    )
    tls.add_argument(
        "--tls-cert", type=argtypes.existing_file, help="this controller's client certificate"
    )
    tls.add_argument("--tls-key", type=argtypes.existing_file, help="this controller's private key")
    tls.add_argument(
        "--tls-server-name",
        type=argtypes.checked(_server_name),
        default="",
        help="name to expect in agent certificates",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="agent version, capabilities and limits")
    faults = sub.add_parser("faults", help="list faults")
    faults.add_argument("--lease", type=argtypes.text, default=None)
    revert = sub.add_parser("revert", help="revert one fault")
    revert.add_argument("fault_id", type=argtypes.text)
    halt = sub.add_parser("halt", help="revert every fault on every agent now, in parallel")
    halt.add_argument("--latch", action="store_true", help="refuse new faults until resume")
    halt.add_argument("--reason", default="", help="free text, recorded in the agents' logs")
    fleet_commands.add_fleet_options(halt)
    sub.add_parser("resume", help="allow new faults after a latched halt")
    lever = sub.add_parser("kill-switch", help="the server's kill switch (needs --server)")
    lever.add_argument("action", choices=["status", "engage", "disengage"])
    lever.add_argument("--reason", default="", help="required to engage")
    schedules.add_parser(sub)
    monkeys.add_parser(sub)
    gamedays.add_parser(sub)
    note = sub.add_parser("note", help="add a timestamped note to a live run (needs --server)")
    note.add_argument("run_id", type=argtypes.text, metavar="RUN")
    note.add_argument("text", type=argtypes.text, help="the observation")

    convert = sub.add_parser(
        "convert",
        help="rewrite an experiment into the portable form that chaos run reads too",
    )
    convert.add_argument("file", type=argtypes.existing_file, metavar="FILE")
    convert.add_argument(
        "--in-place", action="store_true", help="rewrite FILE (comments are not kept)"
    )

    inject = sub.add_parser("inject", help="inject a fault and hold it in the foreground")
    kind_parsers = inject.add_subparsers(dest="kind", required=True)
    for kind in faultspecs.KINDS:
        kp = kind_parsers.add_parser(kind.name, help=kind.help)
        faultflags.add_arguments(kp, kind)
        kp.add_argument("--duration", type=argtypes.positive_duration, required=True)
        kp.add_argument(
            "--lease-ttl", type=argtypes.positive_duration, default=10.0, help="default 10s"
        )
        kp.add_argument(
            "--holder",
            type=argtypes.bounded_text,
            default=f"cli:{getpass.getuser()}@{socket.gethostname()}",
        )
    fleet_commands.add_subcommands(sub)
    certs_cmd = sub.add_parser("certs", help="a throwaway PKI for trying mutual TLS")
    certs_sub = certs_cmd.add_subparsers(dest="certs_command", required=True)
    init = certs_sub.add_parser(
        "init", help="write a CA, an agent, a controller and a viewer certificate to DIR"
    )
    init.add_argument("dir", type=argtypes.dir_path)
    return p


def run_convert(path: Path, in_place: bool) -> int:
    """Print (or write back) the portable form of an experiment file."""
    try:
        doc = yaml.safe_load(path.read_text())
        out, changes = convert(doc if isinstance(doc, dict) else {})
    except (ConfigError, yaml.YAMLError) as exc:
        print(f"brownout: {path}: {exc}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100)
    if in_place:
        path.write_text(text)
    else:
        print(text, end="")
    for line in changes or ["nothing to change: already portable"]:
        print(f"brownout convert: {line}", file=sys.stderr)
    return 0


def _server_url(text: str) -> str:
    url = text.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise ValueError(f"{text!r} must be http(s)://HOST:PORT, e.g. http://127.0.0.1:8470")
    return url


def _server_name(text: str) -> str:
    if text and not valid_hostname(text):
        raise ValueError(f"{text!r} is not a host name")
    return text


def from_env(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> None:
    """Fill flags not given from their BROWNOUT_* variables, checked like the
    flags; raises ConfigError naming the variable."""
    env = os.environ if env is None else env
    if args.agent is None:
        args.agent = _env_value(env, "BROWNOUT_AGENT", argtypes.agent_address, DEFAULT_AGENT)
    if args.server is None:
        args.server = _env_value(env, "BROWNOUT_SERVER", argtypes.checked(_server_url), None)


def _env_value(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    if name not in env:
        return default
    try:
        return parse(env[name])
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(name, str(exc)) from None


def run_certs_init(directory: Path) -> int:
    try:
        files = certs.init(directory)
    except FileExistsError as exc:
        print(f"brownout certs init: {exc}", file=sys.stderr)
        return 2
    for name, path in files.items():
        print(f"{name:<15} {path}")
    print(
        f"\nagent:      brownout-agent serve --tls-cert {files['agent']}"
        f" --tls-key {files['agent_key']} --tls-client-ca {files['ca']}"
        f" --operators {certs.CONTROLLER_IDENTITY} --viewers {certs.VIEWER_IDENTITY}"
        f"\ncontroller: brownout --tls-ca {files['ca']} --tls-cert {files['controller']}"
        f" --tls-key {files['controller_key']} --agent HOST:7070 info"
    )
    return 0


class _Interrupted(Exception):
    pass


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


class AgentCallFailed(Exception):
    """The agent refused or did not answer: `CODE: details`."""


def one(outcomes: Mapping[str, Outcome[T]]) -> T:
    """The value of a call to the single agent, or AgentCallFailed."""
    (outcome,) = outcomes.values()
    if outcome.value is None:
        raise AgentCallFailed(outcome.error)
    return outcome.value


def run_inject(fleet: Fleet, args: argparse.Namespace) -> int:
    address = args.agent
    spec, target = faultflags.build(args)  # before the lease: bad input takes nothing
    lease = one(fleet.acquire_leases([address], args.holder, args.lease_ttl))
    hold = fleet.keepers[address]  # renews at TTL/3 on the fleet's loop
    print(f"lease {lease.lease_id} acquired (ttl {args.lease_ttl:g}s)", flush=True)
    fault: pb.Fault | None = None
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            fault = one(fleet.map(lambda c: c.inject(lease.lease_id, spec, args.duration, target)))
            print(describe_fault(fault), flush=True)
            # The agent says when the fault ends (WatchFaults); the wait below is
            # local, so Ctrl-C and a lost lease are noticed at once.
            latest, ended = [fault], threading.Event()

            def on_event(_agent: str, event: pb.FaultEvent) -> None:
                if event.fault.id == latest[0].id:
                    latest[0] = event.fault
                    if event.fault.state not in LIVE:
                        ended.set()

            if fault.state in LIVE:
                fleet.watch_faults(on_event, streams=True)
            while fault.state in LIVE and not ended.wait(0.25):
                if hold.lost.is_set():
                    print(
                        f"lease lost ({hold.lost_reason}): the agent has reverted the fault",
                        file=sys.stderr,
                    )
                    return 1
            fault = latest[0]
        except _Interrupted as why:
            # A second Ctrl-C must not skip the revert.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            print(f"{why}: reverting", file=sys.stderr, flush=True)
        fleet.stop_watches()
        if fault is not None:
            fault_id = fault.id
            fault = one(fleet.map(lambda c: retrying(lambda: c.revert(fault_id))))
        fleet.loop.run(fleet.release(address))
        if fault is not None:
            print(describe_fault(fault), flush=True)
            return 0 if fault.state == pb.FAULT_STATE_REVERTED else 1
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def agent_command(fleet: Fleet, args: argparse.Namespace) -> int:
    """The single-agent commands, over the same async fleet the runner uses."""
    if args.command == "info":
        print(info_text(one(fleet.map(lambda c: c.info()))))
    elif args.command == "faults":
        print(fault_table(one(fleet.map(lambda c: c.list_faults(args.lease or "")))))
    elif args.command == "revert":
        print(describe_fault(one(fleet.map(lambda c: c.revert(args.fault_id)))))
    elif args.command == "resume":
        print(f"resumed (was latched: {one(fleet.resume()).was_latched})")
    elif args.command == "inject":
        return run_inject(fleet, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    if args.command == "certs":
        return run_certs_init(args.dir)
    if args.command == "convert":
        return run_convert(args.file, args.in_place)
    try:
        from_env(args)
        remote_ok = ("run", "halt", "kill-switch", "schedules", "monkey", "maturity", "note",
                     "report", "gameday")  # fmt: skip
        if args.server and args.command in remote_ok:
            fleet_commands.resolve_env(args)
            if "data_dir" not in args or args.data_dir is None:
                args.data_dir = fleet_commands.default_data_dir()
            return remote.main(args)
        if args.command in ("kill-switch", "schedules", "monkey", "note", "gameday"):
            raise ConfigError(args.command, "needs --server URL (or BROWNOUT_SERVER)")
        if args.command in fleet_commands.COMMANDS:
            return fleet_commands.main(args)
        tls = from_values(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    except (ConfigError, ValueError) as exc:
        print(f"brownout: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, NewerDatabase) as exc:
        print(f"brownout: {exc}", file=sys.stderr)
        return 1
    try:
        with Fleet(inventory.build(agents=[args.agent]), timeout=args.timeout, tls=tls) as fleet:
            return agent_command(fleet, args)
    except AgentCallFailed as exc:
        print(f"brownout: {args.agent}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
