"""Partition: silently drop traffic to and from peers, in one nftables table.

The table (inet family, named after the agent's instance marker) holds base
chains `input` and `output` at raw priority. Each fault adds, in one atomic
transaction and all tagged with the comment "brownout <fault id>":
  - accept rules at the head of the base chains for what must never be cut:
    loopback, and, in the agent's own namespace, its listening ports and the
    peers of the lease holder and of the caller;
  - a jump at the end of each base chain it drops in, to its own chains
    <fault id>-in / <fault id>-out, which `return` for the user's exclusions
    and then `drop` the peers' packets (no reject: no RST, no ICMP).
Revert deletes the fault's rules by handle and its chains; the last fault
out deletes the table, and the sweep deletes the table outright.

Ports are the peer's: destination ports of egress packets, source ports of
ingress ones, so a partition on port 5432 cuts this host's connections to
the peers' port 5432 in whichever directions are asked. Locally generated
UDP and ICMP dropped on output get EPERM from the kernel on send (nothing
reaches the wire); TCP just retransmits until it times out.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog
from google.protobuf.message import Message

from agent.core.errors import InvalidArgument
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.faults import targets
from agent.faults.network.protect import Protected, protected
from agent.faults.network.traffic import (
    ICMP_FOR_VERSION,
    IPPROTO,
    Network,
    PortSpan,
    Proto,
    host_network,
    parse_cidrs,
    parse_ports,
    parse_protocol,
)
from agent.kernel.errors import Gone
from agent.kernel.net import netns
from agent.kernel.net.netns import NetnsRef
from agent.kernel.net.nftables import (
    HOOK_INPUT,
    HOOK_OUTPUT,
    LOOPBACK_IFINDEX,
    NF_ACCEPT,
    NF_DROP,
    NFT_JUMP,
    NFT_RETURN,
    Expr,
    Msg,
    Nft,
    del_chain,
    del_rule,
    del_table,
    match_interface,
    match_l4proto,
    match_network,
    match_port,
    new_base_chain,
    new_chain,
    new_rule,
    new_table,
    verdict,
)
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)

MAX_RULES = 512
BASE_CHAINS = {"input": HOOK_INPUT, "output": HOOK_OUTPUT}
PROBE_PEER = ipaddress.ip_network("192.0.2.1/32")
_edit_lock = threading.Lock()  # serialises this agent's edits of its tables


class RuleRecord(TypedDict):
    chain: str
    handle: int


class PartitionUndo(TypedDict):
    netns: dict[str, Any]
    table: str
    comment: str
    chains: list[str]
    rules: list[RuleRecord]


@dataclass(frozen=True)
class PartitionPlan:
    netns: NetnsRef
    peers: tuple[Network, ...]
    ports: tuple[PortSpan, ...]
    protocol: Proto
    ingress: bool
    egress: bool
    exclude: tuple[Network, ...]
    guard: Protected


def table_name(instance: str) -> str:
    return f"brownout_{instance}"


def comment(fault_id: str) -> str:
    return f"brownout {fault_id}"


def fault_chain(fault_id: str, output: bool) -> str:
    return f"{fault_id}-{'out' if output else 'in'}"


def _l4(protocol: Proto, version: int) -> list[int | None]:
    if protocol == Proto.ICMP:
        return [ICMP_FOR_VERSION[version]]
    if protocol in IPPROTO:
        return [IPPROTO[protocol]]
    return [None]


def _drop_rules(plan: PartitionPlan, output: bool) -> list[list[Expr]]:
    """One expression list per (peer, protocol, port range), each ending in drop."""
    rules = []
    for peer in plan.peers:
        protos: list[int | None]
        if plan.ports and plan.protocol == Proto.ANY:
            protos = [IPPROTO[Proto.TCP], IPPROTO[Proto.UDP]]
        else:
            protos = _l4(plan.protocol, peer.version)
        for proto in protos:
            base = match_network(peer, source=not output)
            if proto is not None:
                base += match_l4proto(proto)
            for span in plan.ports or (None,):
                exprs = list(base)
                if span is not None:
                    exprs += match_port(not output, span.first, span.last)
                rules.append([*exprs, verdict(NF_DROP)])
    return rules


def _protect_rules(guard: Protected, output: bool) -> list[list[Expr]]:
    rules = [[*match_interface(output, LOOPBACK_IFINDEX), verdict(NF_ACCEPT)]]
    for port in guard.listen_ports:
        # Our listener's side of its connections: dport in, sport out.
        rules.append([*match_l4proto(6), *match_port(output, port, port), verdict(NF_ACCEPT)])
    for port in guard.udp_ports:
        # Lease heartbeats in, their answers out (invariant 6, as for gRPC).
        rules.append([*match_l4proto(17), *match_port(output, port, port), verdict(NF_ACCEPT)])
    for addr in guard.peers:
        rules.append([*match_network(host_network(addr), source=not output), verdict(NF_ACCEPT)])
    return rules


def build_messages(plan: PartitionPlan, table: str, fault_id: str) -> list[Msg]:
    """The whole fault as one nftables transaction (pure)."""
    tag = comment(fault_id)
    msgs: list[Msg] = [new_table(table)]
    for name, hook in BASE_CHAINS.items():
        msgs.append(new_base_chain(table, name, hook))
    for name in BASE_CHAINS:
        output = name == "output"
        if not (plan.egress if output else plan.ingress):
            continue
        chain = fault_chain(fault_id, output)
        msgs.append(new_chain(table, chain))
        for exprs in _protect_rules(plan.guard, output):
            msgs.append(new_rule(table, name, exprs, tag, head=True))
        msgs.append(new_rule(table, name, [verdict(NFT_JUMP, chain)], tag, head=False))
        for net in plan.exclude:
            exprs = [*match_network(net, source=not output), verdict(NFT_RETURN)]
            msgs.append(new_rule(table, chain, exprs, tag, head=False))
        for exprs in _drop_rules(plan, output):
            msgs.append(new_rule(table, chain, exprs, tag, head=False))
    return msgs


def parse_partition(spec: pb.PartitionSpec) -> tuple[Any, ...]:
    """(peers, ports, protocol, ingress, egress, exclude), validated (pure)."""
    if not spec.peers:
        raise InvalidArgument("partition.peers", "at least one peer CIDR is required")
    peers = parse_cidrs("partition.peers", spec.peers)
    ports = parse_ports("partition.ports", spec.ports)
    protocol = parse_protocol("partition.protocol", spec.protocol)
    if protocol == Proto.ICMP and ports:
        raise InvalidArgument("partition.protocol", "icmp has no ports: drop partition.ports")
    if spec.direction not in (
        pb.DIRECTION_UNSPECIFIED,
        pb.DIRECTION_BOTH,
        pb.DIRECTION_EGRESS,
        pb.DIRECTION_INGRESS,
    ):
        raise InvalidArgument("partition.direction", f"unknown direction {spec.direction}")
    ingress = spec.direction in (pb.DIRECTION_UNSPECIFIED, pb.DIRECTION_BOTH, pb.DIRECTION_INGRESS)
    egress = spec.direction in (pb.DIRECTION_UNSPECIFIED, pb.DIRECTION_BOTH, pb.DIRECTION_EGRESS)
    exclude = parse_cidrs("partition.exclude", spec.exclude)
    return peers, ports, protocol, ingress, egress, exclude


def _commit(nft: Nft, msgs: list[Msg], what: str) -> list[RuleRecord]:
    created = nft.commit(msgs, what)
    return [{"chain": r.chain, "handle": r.handle} for r in created]


def _remove(
    ref: NetnsRef, table: str, tag: str, chains: list[str], handles: list[dict[str, Any]]
) -> str:
    with Nft.open(ref) as nft:
        present = nft.chains(table)
        if not present:
            return "no table"
        others = [c for c in present if c not in BASE_CHAINS and c not in chains]
        if not others:
            nft.commit([del_table(table)], f"delete table {table}")
            return "deleted the table"
        recorded = {(h["chain"], int(h["handle"])) for h in handles}
        mine = [
            r
            for r in nft.rules(table)
            if r.chain in BASE_CHAINS and (r.comment == tag or (r.chain, r.handle) in recorded)
        ]
        msgs = [del_rule(table, r.chain, r.handle) for r in mine]
        msgs += [del_chain(table, c) for c in chains if c in present]
        if msgs:
            nft.commit(msgs, f"delete rules of {tag}")
        return f"deleted {len(mine)} rules and {len([c for c in chains if c in present])} chains"


def _probe() -> None:
    """Every kind of rule a partition uses, in a scratch namespace."""
    plan = PartitionPlan(
        netns.own(),
        (PROBE_PEER,),
        (PortSpan(9, 9),),
        Proto.TCP,
        True,
        True,
        (),
        Protected((), (7,)),
    )
    with Nft.scratch() as nft:
        _commit(nft, build_messages(plan, "brownout_probe", "fault-probe"), "probe")


class PartitionInjector:
    kind = "partition"
    survives_reboot = False

    def __init__(self, ctx: InjectorContext) -> None:
        self._ctx = ctx
        self._table = table_name(ctx.markers.instance)

    def probe(self) -> Capability:
        try:
            _probe()
        except OSError as exc:
            return Capability(
                False,
                "nftables inet tables unavailable (CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET)"
                f" in a scratch namespace: {exc}",
            )
        return Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> PartitionPlan:
        assert isinstance(spec, pb.PartitionSpec)
        peers, ports, protocol, ingress, egress, exclude = parse_partition(spec)
        ref = targets.network(target)
        guard = protected(self._ctx, request) if ref.own else Protected((), ())
        plan = PartitionPlan(ref, peers, ports, protocol, ingress, egress, exclude, guard)
        count = len(build_messages(plan, self._table, "fault-x"))
        if count > MAX_RULES:
            raise InvalidArgument(
                "partition",
                f"expands to {count} nftables rules (at most {MAX_RULES}):"
                " give fewer peers or port ranges",
            )
        return plan

    def apply(self, fault_id: str, plan: PartitionPlan, checkpoint: Checkpoint) -> Applied:
        chains = [
            fault_chain(fault_id, output)
            for output in (False, True)
            if (plan.egress if output else plan.ingress)
        ]
        undo: PartitionUndo = {
            "netns": plan.netns.record(),
            "table": self._table,
            "comment": comment(fault_id),
            "chains": chains,
            "rules": [],
        }
        checkpoint(undo)
        msgs = build_messages(plan, self._table, fault_id)
        with _edit_lock, Nft.open(plan.netns) as nft:
            created = _commit(nft, msgs, f"partition {fault_id}")
        undo["rules"] = created
        checkpoint(undo)
        direction = (
            "both" if plan.ingress and plan.egress else "ingress" if plan.ingress else "egress"
        )
        summary = {
            "netns": plan.netns.label,
            "nft_table": f"inet {self._table}",
            "chains": ",".join(chains),
            "rule_handles": ",".join(f"{r['chain']}:{r['handle']}" for r in created),
            "peers": ",".join(map(str, plan.peers)),
            "direction": direction,
            "excluded": ",".join(
                ["lo"]
                + [str(n) for n in plan.exclude]
                + ([plan.guard.describe()] if plan.guard.describe() else [])
            ),
        }
        return Applied(undo, summary)

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        if not undo or "netns" not in undo:
            return
        ref = NetnsRef.from_record(undo["netns"])
        table, tag = str(undo["table"]), str(undo["comment"])
        chains, handles = list(undo["chains"]), list(undo.get("rules", []))
        with _edit_lock:
            done = _remove(ref, table, tag, chains, handles)
        log.info("partition reverted", fault_id=fault_id, netns=ref.label, done=done)

    def sweep(self) -> list[str]:
        swept = []
        for ref in netns.named_namespaces():
            try:
                with _edit_lock, Nft.open(ref) as nft:
                    dropped = nft.drop_table(self._table)
            except (OSError, Gone) as exc:
                log.warning("partition sweep skipped a namespace", netns=ref.label, error=str(exc))
                continue
            if dropped:
                swept.append(f"nft table inet {self._table} in {ref.label}")
        return swept
