"""`brownout serve`: the long-running controller. The HTTP API on --listen
(bearer tokens; plaintext only on loopback), experiments given on the command
line run every --every inside their windows, Prometheus metrics on
--metrics-listen. `brownout token` makes an API token.

Without --tokens, DATA_DIR/tokens.yaml is used, made on first start with one
operator token named "local" whose value is kept in DATA_DIR/local-token
(mode 0600), so a person on this host can use the API and console at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import structlog
import yaml

from controller.agents.connection import AgentConnection
from controller.agents.tls import ClientTls
from controller.cli import argtypes, certs, declared_file
from controller.cli.maturity import add_practice_options
from controller.cli.progress import Console
from controller.errors import ConfigError
from controller.experiments import gates, pyfuncs
from controller.experiments import parse as exp
from controller.experiments.gates import Gates
from controller.experiments.metrics import ControllerMetrics
from controller.service import app, notify, replicas, tls
from controller.service.auth import Role, Tokens, new_token
from controller.service.errors import Refused
from controller.service.notify import Notifier
from controller.service.practice import read_practice
from controller.service.state import Service
from controller.service.tls import CertRoles

log = structlog.get_logger("brownout.serve")


def add_parsers(sub: Any, add_fleet_options: Any, data_dir_option: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="the long-running controller: HTTP API, console, kill switch, scheduled runs",
    )
    serve.add_argument("experiments", type=argtypes.path, nargs="*", metavar="EXPERIMENT")
    add_fleet_options(serve)
    data_dir_option(serve)
    serve.add_argument(
        "--listen",
        type=argtypes.listen_address,
        default="127.0.0.1:8470",
        help="the API and console (default 127.0.0.1:8470; plaintext only on loopback)",
    )
    serve.add_argument(
        "--tokens",
        type=argtypes.existing_file,
        help="API tokens (YAML: name, role, sha256); default DATA_DIR/tokens.yaml",
    )
    serve.add_argument("--tls-server-cert", type=argtypes.existing_file, help="the API's cert")
    serve.add_argument("--tls-server-key", type=argtypes.existing_file, help="its private key")
    serve.add_argument(
        "--tls-client-ca",
        type=argtypes.existing_file,
        help="mutual TLS: accept client certificates signed by this CA (tokens still work)",
    )
    serve.add_argument(
        "--tls-operators",
        type=argtypes.bounded_text,
        nargs="+",
        default=[certs.CONTROLLER_IDENTITY],
        metavar="IDENTITY",
        help=f"client-certificate identities (SAN or CN) with the operator role"
        f" (default {certs.CONTROLLER_IDENTITY})",
    )
    serve.add_argument(
        "--tls-viewers",
        type=argtypes.bounded_text,
        nargs="+",
        default=[certs.VIEWER_IDENTITY],
        metavar="IDENTITY",
        help=f"identities with the viewer role (default {certs.VIEWER_IDENTITY})",
    )
    serve.add_argument(
        "--metrics-listen",
        type=argtypes.listen_address,
        default="127.0.0.1:9465",
        help="default 127.0.0.1:9465",
    )
    serve.add_argument(
        "--every", type=argtypes.positive_duration, default=3600.0, help="pause between rounds (1h)"
    )
    serve.add_argument(
        "--rounds", type=argtypes.int_in(0), default=0, help="stop after N rounds (0: never)"
    )
    serve.add_argument(
        "--schedules",
        type=argtypes.existing_file,
        help="schedules declared in a file (YAML: schedules: [...]), loaded at start; the"
        " file is their source of truth (the API may pause and resume them)",
    )
    serve.add_argument(
        "--monkeys",
        type=argtypes.existing_file,
        help="monkeys declared in a file (YAML: monkeys: [...]), loaded at start; the file is"
        " their source of truth",
    )
    add_practice_options(serve)
    serve.add_argument(
        "--gates",
        type=argtypes.existing_file,
        help="safety gates before every scheduled run, besides each schedule's own (YAML:"
        " alertmanager, probes, webhook)",
    )
    serve.add_argument(
        "--notify",
        type=argtypes.existing_file,
        help="webhooks told of runs, steps, aborts, ends, gate skips and the kill switch"
        " (YAML: notifications: [...]; URLs from the environment or files)",
    )
    serve.add_argument(
        "--replica-timeout",
        type=argtypes.duration_at_least(3.0),
        default=replicas.TIMEOUT,
        help="with several replicas on one --database: how long one may go without a"
        " heartbeat before another marks its runs interrupted and takes over (default 10s)",
    )
    serve.add_argument(
        "--python-module",
        type=argtypes.checked(pyfuncs.module_name),
        action="append",
        default=[],
        metavar="PREFIX",
        help="allow experiments' python providers and controls from this module (and its"
        " submodules); repeatable. They run code in the controller: none is allowed unless"
        " listed",
    )
    serve.add_argument(
        "--ready-file",
        type=argtypes.file_in_existing_dir,
        help="write the API and metrics ports as JSON here",
    )

    token = sub.add_parser("token", help="make an API token for brownout serve (shown once)")
    token.add_argument("--file", type=argtypes.file_in_existing_dir, required=True)
    token.add_argument("--name", type=argtypes.text, required=True)
    token.add_argument("--role", choices=[str(r) for r in Role], required=True)


def cmd_token(args: argparse.Namespace) -> int:
    print(new_token(args.file, args.name, Role(args.role)))
    return 0


def _tokens(args: argparse.Namespace) -> Tokens:
    if args.tokens is not None:
        return Tokens.load(args.tokens)
    path = Path(args.data_dir) / "tokens.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        local = path.parent / "local-token"
        local.touch(mode=0o600)
        local.write_text(new_token(path, "local", Role.OPERATOR) + "\n")
        print(f"brownout: made an operator token for this host: {local}", file=sys.stderr)
    return Tokens.load(path)


def _ssl(args: argparse.Namespace) -> dict[str, Any]:
    cert, key = args.tls_server_cert, args.tls_server_key
    if (cert is None) != (key is None):
        raise ConfigError("--tls-server-cert", "needs --tls-server-key too, and the other way")
    if args.tls_client_ca is not None and cert is None:
        raise ConfigError("--tls-client-ca", "mutual TLS needs --tls-server-cert and -key too")
    return tls.uvicorn_options(cert, key, args.tls_client_ca)


def _cert_roles(args: argparse.Namespace) -> CertRoles | None:
    if args.tls_client_ca is None:
        return None
    return CertRoles(frozenset(args.tls_operators), frozenset(args.tls_viewers))


def _rounds(svc: Service, args: argparse.Namespace, stop: threading.Event) -> None:
    experiments = [exp.load(p) for p in args.experiments]
    rounds = 0
    reporter = Console()
    while experiments and not stop.is_set():
        for e in experiments:
            if stop.is_set():
                return
            try:
                run = svc.runs.start(e, "schedule")
            except Refused as exc:
                reporter.event(f"skipping {e.title}: {exc}")
                continue
            reporter.event(f"run {run.run_id}: {e.title}")
            run.done.wait()
        rounds += 1
        if args.rounds and rounds >= args.rounds:
            return
        stop.wait(args.every)


def read_gates(path: Path) -> Gates:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    return gates.parse(raw, str(path))


def cmd_serve(args: argparse.Namespace, refs: Any, agent_tls: ClientTls | None) -> int:
    ssl = _ssl(args)
    pyfuncs.allow(tuple(args.python_module))
    for p in args.experiments:
        exp.load(p)  # refuse a bad file before anything starts
    declared = declared_file.read_schedules(args.schedules) if args.schedules else None
    monkeys = declared_file.read_monkeys(args.monkeys) if args.monkeys else None
    service_gates = read_gates(args.gates) if args.gates else None
    practice_file = read_practice(args.practice)
    notifier = Notifier(notify.load(args.notify)) if args.notify else None
    sock = app.bind(args.listen, tls=bool(ssl))
    metrics = ControllerMetrics()
    metrics_port = metrics.serve(args.metrics_listen)
    agents = AgentConnection.of(refs, args.timeout, agent_tls)
    svc = Service.build(
        agents, Path(args.data_dir), _tokens(args), metrics, _cert_roles(args), notifier,
        args.database, args.replica_timeout,
    )  # fmt: skip
    try:
        if declared is not None:
            declared_file.load(svc.schedules, args.schedules, declared, "schedule")
        if monkeys is not None:
            declared_file.load(svc.monkeys, args.monkeys, monkeys, "monkey")
        svc.practice, svc.production = practice_file, args.production
        if service_gates is not None:
            svc.scheduler.gates = service_gates
            svc.keeper.gates = service_gates
        interrupted = app.prepare(svc)
        api_port = sock.getsockname()[1]
        scheme = "https" if ssl else "http"
        host = args.listen.rsplit(":", 1)[0]
        print(
            f"brownout: serving {scheme}://{host}:{api_port}/ (metrics on port {metrics_port})",
            file=sys.stderr,
            flush=True,
        )
        if args.ready_file:
            args.ready_file.write_text(
                json.dumps(
                    {
                        "api_port": api_port,
                        "metrics_port": metrics_port,
                        "pid": os.getpid(),
                        "interrupted": interrupted,
                        "replica": svc.sync.me.replica,
                    }
                )
            )
        stop = threading.Event()
        rounds = threading.Thread(target=_rounds, args=(svc, args, stop), daemon=True)
        rounds.start()
        svc.scheduler.start()
        svc.keeper.start()
        app.serve(svc, sock, ssl)
        stop.set()
    finally:
        svc.close()
    return 0
