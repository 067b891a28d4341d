"""DNS block: silently drop DNS (UDP and TCP to port 53) that a network
namespace sends, to every resolver or only to the ones given.

Each fault is one nftables table of its own (inet family, named after the
agent's instance and the fault), with one output base chain: for each
resolver network, a UDP and a TCP rule that drop packets to its port 53. No
loopback exception, unlike a partition: a local stub resolver (127.0.0.53,
dnsmasq) is the usual resolver, and only port 53 is touched, never the
agent's own connections. A sent query meets EPERM (nothing reaches the
wire), so getaddrinfo fails at once instead of timing out.

The table is journaled before it is created; revert deletes it (a missing
table is already reverted), and the sweep deletes every such table of this
agent in every namespace it can see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog
from google.protobuf.message import Message

from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.faults import targets
from agent.faults.network.traffic import IPPROTO, Network, Proto, parse_cidrs
from agent.kernel.errors import Gone
from agent.kernel.net import netns
from agent.kernel.net.netns import NetnsRef
from agent.kernel.net.nftables import (
    HOOK_OUTPUT,
    NF_DROP,
    Msg,
    Nft,
    match_l4proto,
    match_network,
    match_port,
    new_base_chain,
    new_rule,
    new_table,
    verdict,
)
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)

DNS_PORT = 53
EVERY_RESOLVER = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


class DnsUndo(TypedDict):
    netns: dict[str, Any]
    table: str


@dataclass(frozen=True)
class DnsPlan:
    netns: NetnsRef
    resolvers: tuple[Network, ...]


def table_prefix(instance: str) -> str:
    return f"brownout_{instance}_dns_"


def port_block_messages(
    table: str, nets: tuple[Network, ...], port: int, protos: tuple[Proto, ...], fault_id: str
) -> list[Msg]:
    """A table of its own whose output chain drops what goes to `port` of
    `nets` over `protos`, as one nftables transaction (pure)."""
    tag = f"brownout {fault_id}"
    msgs: list[Msg] = [new_table(table), new_base_chain(table, "output", HOOK_OUTPUT)]
    for net in nets:
        for proto in protos:
            exprs = [
                *match_network(net, source=False),
                *match_l4proto(IPPROTO[proto]),
                *match_port(False, port, port),
                verdict(NF_DROP),
            ]
            msgs.append(new_rule(table, "output", exprs, tag, head=False))
    return msgs


def build_messages(plan: DnsPlan, table: str, fault_id: str) -> list[Msg]:
    return port_block_messages(table, plan.resolvers, DNS_PORT, (Proto.UDP, Proto.TCP), fault_id)


class DnsInjector:
    kind = "dns"
    survives_reboot = False

    def __init__(self, ctx: InjectorContext) -> None:
        self._ctx = ctx
        self._prefix = table_prefix(ctx.markers.instance)

    def probe(self) -> Capability:
        plan = DnsPlan(netns.own(), EVERY_RESOLVER)
        try:
            with Nft.scratch() as nft:
                nft.commit(build_messages(plan, "brownout_probe_dns", "fault-probe"), "probe")
        except OSError as exc:
            return Capability(
                False, f"nftables inet tables unavailable in a scratch namespace: {exc}"
            )
        return Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> DnsPlan:
        assert isinstance(spec, pb.DnsSpec)
        resolvers = parse_cidrs("dns.resolvers", spec.resolvers) or EVERY_RESOLVER
        return DnsPlan(targets.network(target), resolvers)

    def apply(self, fault_id: str, plan: DnsPlan, checkpoint: Checkpoint) -> Applied:
        table = self._prefix + fault_id.removeprefix("fault-")
        undo: DnsUndo = {"netns": plan.netns.record(), "table": table}
        checkpoint(undo)  # before the table exists: whoever reverts deletes it
        with Nft.open(plan.netns) as nft:
            nft.commit(build_messages(plan, table, fault_id), f"dns {fault_id}")
        summary = {
            "netns": plan.netns.label,
            "nft_table": f"inet {table}",
            "resolvers": ",".join(map(str, plan.resolvers)),
            "blocked": "udp and tcp port 53",
        }
        return Applied(undo, summary)

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        if not undo or "netns" not in undo:
            return
        ref = NetnsRef.from_record(undo["netns"])
        with Nft.open(ref) as nft:
            dropped = nft.drop_table(str(undo["table"]))
        log.info("dns block reverted", fault_id=fault_id, netns=ref.label, dropped=dropped)

    def sweep(self) -> list[str]:
        swept = []
        for ref in [netns.own(), *netns.named_namespaces()]:
            try:
                with Nft.open(ref) as nft:
                    mine = nft.drop_tables(self._prefix)
            except (OSError, Gone) as exc:
                log.warning("dns sweep skipped a namespace", netns=ref.label, error=str(exc))
                continue
            swept += [f"nft table inet {t} in {ref.label}" for t in mine]
        return swept
