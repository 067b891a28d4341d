"""`brownout-agent`: serve the gRPC API, or sweep leftovers offline."""

from __future__ import annotations

import argparse
import json
import sys

from agent import __version__, config, daemon, logs
from agent.tls import TlsConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="brownout-agent", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the agent")
    config.add_serve_flags(serve)
    sweep = sub.add_parser(
        "sweep", help="revert everything the journal holds and remove marked leftovers, offline"
    )
    config.add_common_flags(sweep)
    args = p.parse_args(argv)
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
