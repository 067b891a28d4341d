"""`brownout`: the command-line client for one agent.

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
from types import FrameType

import grpc

from agent.units import parse_duration
from brownout.v1 import agent_pb2 as pb
from controller import kinds
from controller.client import AgentClient
from controller.kinds.common import typed
from controller.lease_keeper import LeaseKeeper
from controller.render import describe_fault, fault_table, info_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brownout", description=__doc__)
    p.add_argument(
        "--agent",
        default=os.environ.get("BROWNOUT_AGENT", "127.0.0.1:7070"),
        help="agent host:port (env BROWNOUT_AGENT)",
    )
    p.add_argument("--timeout", type=typed(parse_duration), default=10.0, help="per-RPC timeout")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="agent version, capabilities and limits")
    faults = sub.add_parser("faults", help="list faults")
    faults.add_argument("--lease", default="")
    revert = sub.add_parser("revert", help="revert one fault")
    revert.add_argument("fault_id")
    halt = sub.add_parser("halt", help="revert every fault on the agent now")
    halt.add_argument("--latch", action="store_true", help="refuse new faults until resume")
    halt.add_argument("--reason", default="")
    sub.add_parser("resume", help="allow new faults after a latched halt")

    inject = sub.add_parser("inject", help="inject a fault and hold it in the foreground")
    kind_parsers = inject.add_subparsers(dest="kind", required=True)
    for module in kinds.KINDS:
        kp = kind_parsers.add_parser(module.NAME, help=module.HELP)
        module.add_arguments(kp)
        kp.add_argument("--duration", type=typed(parse_duration), required=True)
        kp.add_argument("--lease-ttl", type=typed(parse_duration), default=10.0, help="default 10s")
        kp.add_argument("--holder", default=f"cli:{getpass.getuser()}@{socket.gethostname()}")
    return p


class _Interrupted(Exception):
    pass


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def run_inject(client: AgentClient, args: argparse.Namespace) -> int:
    lease = client.acquire_lease(args.holder, args.lease_ttl)
    print(f"lease {lease.lease_id} acquired (ttl {args.lease_ttl:g}s)", flush=True)
    keeper = LeaseKeeper(client, lease.lease_id, args.lease_ttl).start()
    fault: pb.Fault | None = None
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            spec, target = kinds.build(args)
            fault = client.inject(lease.lease_id, spec, args.duration, target)
            print(describe_fault(fault), flush=True)
            while fault.state in (pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE):
                if keeper.lost.wait(0.25):
                    print(
                        f"lease lost ({keeper.lost_reason}): the agent has reverted the fault",
                        file=sys.stderr,
                    )
                    return 1
                fault = client.get_fault(fault.id)
        except _Interrupted as why:
            # A second Ctrl-C must not skip the revert.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            print(f"{why}: reverting", file=sys.stderr, flush=True)
        keeper.stop()
        if fault is not None:
            fault = client.revert(fault.id)
        client.release_lease(lease.lease_id)
        if fault is not None:
            print(describe_fault(fault), flush=True)
            return 0 if fault.state == pb.FAULT_STATE_REVERTED else 1
        return 1
    finally:
        keeper.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = AgentClient(args.agent, timeout=args.timeout)
    try:
        if args.command == "info":
            print(info_text(client.info()))
        elif args.command == "faults":
            print(fault_table(client.list_faults(args.lease)))
        elif args.command == "revert":
            print(describe_fault(client.revert(args.fault_id)))
        elif args.command == "halt":
            resp = client.halt(args.latch, args.reason)
            print(f"halted: {len(resp.faults)} fault(s) reverted; latched={resp.latched}")
            for f in resp.faults:
                print(describe_fault(f))
        elif args.command == "resume":
            print(f"resumed (was latched: {client.resume().was_latched})")
        elif args.command == "inject":
            return run_inject(client, args)
        return 0
    except grpc.RpcError as exc:
        print(f"brownout: {args.agent}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
