"""`brownout-agent`: serve the gRPC API, or sweep leftovers offline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from agent import config, config_file, daemon
from agent.api.tls import TlsConfigError
from brownout import logs
from brownout.version import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brownout-agent", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the agent")
    config.add_serve_flags(serve)
    sweep = sub.add_parser(
        "sweep", help="revert everything the journal holds and remove marked leftovers, offline"
    )
    config.add_common_flags(sweep)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags over BROWNOUT_* environment over the --config file over defaults,
    every value parsed and checked. Raises ConfigError or ConfigFileError."""
    ns = build_parser().parse_args(argv)
    path: Path | None = ns.config
    if path is None and "BROWNOUT_CONFIG" in os.environ:
        text = os.environ["BROWNOUT_CONFIG"]
        if not text.strip():
            raise config.ConfigError("BROWNOUT_CONFIG '': is empty: give the config file's path")
        path = Path(text)
    values = config_file.load(path) if path is not None else {}
    options = config.SERVE if ns.command == "serve" else config.COMMON
    config.resolve(ns, options, values, str(path))
    return ns


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except (config_file.ConfigFileError, config.ConfigError) as exc:
        print(f"brownout-agent: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level)

    if args.command == "serve":
        try:
            return daemon.serve(config.from_args(args))
        except (daemon.StateDirBusy, daemon.ListenError, TlsConfigError) as exc:
            print(f"brownout-agent: {exc}", file=sys.stderr)
            return 2
    cfg = config.AgentConfig(state_dir=args.state_dir, log_level=args.log_level)
    try:
        report = daemon.sweep(cfg)
    except daemon.StateDirBusy as exc:
        print(f"brownout-agent sweep: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if not report["remaining_journal"] else 1


if __name__ == "__main__":
    sys.exit(main())
