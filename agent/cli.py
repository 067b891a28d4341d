"""`brownout-agent`: serve the gRPC API, or sweep leftovers offline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from agent import __version__, config, config_file, daemon, logs
from agent.tls import TlsConfigError


def _file_defaults(argv: list[str] | None) -> dict[str, object]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=os.environ.get("BROWNOUT_CONFIG"))
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return {}
    return config_file.without_env_overrides(config_file.load(Path(known.config)))


def build_parser(defaults: dict[str, object]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brownout-agent", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the agent")
    config.add_serve_flags(serve)
    sweep = sub.add_parser(
        "sweep", help="revert everything the journal holds and remove marked leftovers, offline"
    )
    config.add_common_flags(sweep)
    serve.set_defaults(**defaults)
    sweep.set_defaults(**{k: v for k, v in defaults.items() if k in ("state_dir", "log_level")})
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags over BROWNOUT_* environment over the --config file over defaults."""
    return build_parser(_file_defaults(argv)).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except config_file.ConfigFileError as exc:
        print(f"brownout-agent: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level)

    if args.command == "serve":
        try:
            return daemon.serve(config.from_args(args))
        except (daemon.StateDirBusy, TlsConfigError) as exc:
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
