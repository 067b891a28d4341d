"""DNS faults in a network namespace: a block, or answers for given names.

Each fault is one nftables table of its own (inet family, named after the
agent's instance and the fault). No loopback exception, unlike a partition:
a local stub resolver (127.0.0.53, dnsmasq) is the usual resolver, and only
port 53 is touched, never the agent's own connections.

- A block (no names): an output chain drops UDP and TCP to port 53 of each
  resolver network. A sent query meets EPERM (nothing reaches the wire), so
  getaddrinfo fails at once instead of timing out.
- Answers (names): an answerer process (agent/dnsanswer, started by the
  spawner, dying with the agent) binds a loopback port per resolver inside
  the namespace, and a nat output chain redirects each resolver's DNS to its
  port, except what the answerer forwards (its sockets carry ANSWERER_MARK).
  It answers the matching names and forwards the rest to their resolver.

The table is journaled before it is created (and the answerer before it
starts); revert deletes the table first, so DNS reaches the resolvers
directly again, then kills the answerer. The sweep deletes every such table
of this agent in every namespace it can see, and kills every answerer.
Between an agent crash and its restart (or the sweep) the redirect points
at a closed port: DNS to those resolvers fails at once (port unreachable)
until the table is gone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog
from google.protobuf.message import Message

from agent.core.errors import FailedPrecondition, InvalidArgument
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.dnsanswer.rules import Address, Answer, Names
from agent.faults import targets
from agent.faults.network.traffic import IPPROTO, Network, Proto, parse_cidrs
from agent.faults.resource.workers import WorkerInjector, WorkerRecord
from agent.kernel import procs
from agent.kernel.errors import Gone
from agent.kernel.net import netns, resolvconf
from agent.kernel.net.conntrack import Conntrack, Flow
from agent.kernel.net.netns import NetnsRef
from agent.kernel.net.nftables import (
    HOOK_OUTPUT,
    NF_DROP,
    PRIORITY_DSTNAT,
    Msg,
    Nft,
    match_l4proto,
    match_mark_not,
    match_network,
    match_port,
    new_base_chain,
    new_rule,
    new_table,
    redirect_to_port,
    verdict,
)
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)

DNS_PORT = 53
EVERY_RESOLVER = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
ANSWERER_MARK = 0x62726F77  # "brow": the answerer's own queries pass the redirect
MAX_NAMES = 256
ANSWERS = {
    pb.DNS_ANSWER_UNSPECIFIED: Answer.NXDOMAIN,
    pb.DNS_ANSWER_NXDOMAIN: Answer.NXDOMAIN,
    pb.DNS_ANSWER_SERVFAIL: Answer.SERVFAIL,
    pb.DNS_ANSWER_REFUSED: Answer.REFUSED,
    pb.DNS_ANSWER_TIMEOUT: Answer.TIMEOUT,
    pb.DNS_ANSWER_SPOOF: Answer.SPOOF,
}


class DnsUndo(TypedDict, total=False):
    netns: dict[str, Any]
    table: str
    workers: list[WorkerRecord]


@dataclass(frozen=True)
class DnsPlan:
    netns: NetnsRef
    resolvers: tuple[Network, ...]
    names: tuple[str, ...] = ()  # none: a block
    answer: Answer = Answer.NXDOMAIN
    spoof: tuple[Address, ...] = ()

    @property
    def upstreams(self) -> list[Address]:
        return [r.network_address for r in self.resolvers]


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


def redirect_messages(
    table: str, resolvers: tuple[Network, ...], ports: list[int], fault_id: str
) -> list[Msg]:
    """A table whose nat output chain sends each resolver's DNS (UDP and TCP)
    to its answerer port, unless the answerer sent it (pure)."""
    tag = f"brownout {fault_id}"
    msgs: list[Msg] = [
        new_table(table),
        new_base_chain(table, "redirect", HOOK_OUTPUT, "nat", PRIORITY_DSTNAT),
    ]
    for resolver, port in zip(resolvers, ports, strict=True):
        for proto in (Proto.UDP, Proto.TCP):
            exprs = [
                *match_mark_not(ANSWERER_MARK),
                *match_network(resolver, source=False),
                *match_l4proto(IPPROTO[proto]),
                *match_port(False, DNS_PORT, DNS_PORT),
                *redirect_to_port(port),
            ]
            msgs.append(new_rule(table, "redirect", exprs, tag, head=False))
    return msgs


def redirected(flow: Flow) -> bool:
    """A DNS flow that a redirect sent to a loopback port (an answerer's)."""
    return (
        flow.original.dport == DNS_PORT
        and flow.translated
        and flow.reply.src.is_loopback
        and flow.reply.sport != DNS_PORT
    )


def to_resolvers(resolvers: tuple[Network, ...]) -> Callable[[Flow], bool]:
    def match(flow: Flow) -> bool:
        end = flow.original
        return end.dport == DNS_PORT and any(end.dst in r for r in resolvers)

    return match


def forget_flows(ref: NetnsRef, which: Callable[[Flow], bool]) -> int:
    """Delete the namespace's conntrack flows that `which` picks, so their next
    packet meets the nat chain as it is now; how many."""
    with Conntrack.open(ref) as ct:
        return sum(ct.delete(f) for f in ct.flows() if which(f))


def build_messages(plan: DnsPlan, table: str, fault_id: str) -> list[Msg]:
    return port_block_messages(table, plan.resolvers, DNS_PORT, (Proto.UDP, Proto.TCP), fault_id)


def _answers(spec: pb.DnsSpec) -> tuple[tuple[str, ...], Answer, tuple[Address, ...]]:
    """The names, answer and spoofed addresses of a spec; InvalidArgument if they disagree."""
    if len(spec.names) > MAX_NAMES:
        raise InvalidArgument("dns.names", f"at most {MAX_NAMES} names, got {len(spec.names)}")
    names = []
    for i, text in enumerate(spec.names):
        try:
            Names.of([text])
        except ValueError as exc:
            raise InvalidArgument(f"dns.names[{i}]", str(exc)) from None
        names.append(text)
    answer = ANSWERS.get(spec.answer)
    if answer is None:
        raise InvalidArgument("dns.answer", f"unknown answer {spec.answer}")
    if not names and (spec.answer or spec.spoof_addresses):
        raise InvalidArgument(
            "dns.names", "an answer needs the names it is for (without names, DNS is dropped)"
        )
    spoof = []
    for i, text in enumerate(spec.spoof_addresses):
        try:
            spoof.append(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise InvalidArgument(
                f"dns.spoof_addresses[{i}]", f"{text!r} is not an IPv4 or IPv6 address"
            ) from None
    if answer is Answer.SPOOF and not spoof:
        raise InvalidArgument("dns.spoof_addresses", "a spoofed answer needs addresses")
    if spoof and answer is not Answer.SPOOF:
        raise InvalidArgument("dns.spoof_addresses", "addresses go with answer spoof only")
    return tuple(names), answer, tuple(spoof)


def _upstreams(spec: pb.DnsSpec, target: pb.Target) -> tuple[Network, ...]:
    """The resolvers whose DNS is answered: the ones given (single addresses),
    or the target's resolv.conf nameservers."""
    given = parse_cidrs("dns.resolvers", spec.resolvers)
    for i, net in enumerate(given):
        if net.num_addresses != 1:
            raise InvalidArgument(
                f"dns.resolvers[{i}]",
                f"with names, a resolver is one address (its queries are forwarded), got {net}",
            )
    if given:
        return tuple(dict.fromkeys(given))
    which = target.WhichOneof("selector")
    pid = target.pid if which == "pid" else 0
    if which == "container":
        pid = targets.container(target).pid
    name = target.netns_name if which == "netns_name" else ""
    path = resolvconf.path_for(netns_name=name, pid=pid)
    return tuple(ipaddress.ip_network(a) for a in resolvconf.nameservers(path))


class DnsInjector(WorkerInjector):
    kind = "dns"
    survives_reboot = False
    module = "agent.dnsanswer.server"
    what = "dns answerer"

    def __init__(self, ctx: InjectorContext, spawner: procs.Spawner) -> None:
        super().__init__(ctx, spawner)
        self._prefix = table_prefix(ctx.markers.instance)
        self._no_answers = ""  # why answers for names cannot run here (set by probe)

    def probe(self) -> Capability:
        plan = DnsPlan(netns.own(), EVERY_RESOLVER)
        try:
            with Nft.scratch() as nft:
                nft.commit(build_messages(plan, "brownout_probe_dns", "fault-probe"), "probe")
        except OSError as exc:
            return Capability(
                False, f"nftables inet tables unavailable in a scratch namespace: {exc}"
            )
        try:
            with Nft.scratch() as nft:
                resolver = (ipaddress.ip_network("192.0.2.53/32"),)
                msgs = redirect_messages("brownout_probe_dnsnat", resolver, [5353], "fault-probe")
                nft.commit(msgs, "probe")
        except OSError as exc:
            self._no_answers = f"nftables nat chains (answers for names) unavailable: {exc}"
            return Capability(True, f"blocks only: {self._no_answers}")
        self._no_answers = ""
        return Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> DnsPlan:
        assert isinstance(spec, pb.DnsSpec)
        names, answer, spoof = _answers(spec)
        ref = targets.network(target)
        if not names:
            resolvers = parse_cidrs("dns.resolvers", spec.resolvers) or EVERY_RESOLVER
            return DnsPlan(ref, resolvers)
        if self._no_answers:
            raise FailedPrecondition(self._no_answers)
        return DnsPlan(ref, _upstreams(spec, target), names, answer, spoof)

    def apply(self, fault_id: str, plan: DnsPlan, checkpoint: Checkpoint) -> Applied:
        table = self._prefix + fault_id.removeprefix("fault-")
        undo: DnsUndo = {"netns": plan.netns.record(), "table": table, "workers": []}
        checkpoint(undo)  # before the table exists: whoever reverts deletes it
        summary = {"netns": plan.netns.label, "nft_table": f"inet {table}"}
        if plan.names:
            ports = self._start_answerer(fault_id, plan, undo, checkpoint)
            msgs = redirect_messages(table, plan.resolvers, ports, fault_id)
            summary |= {
                "resolvers": ",".join(str(a) for a in plan.upstreams),
                "names": ",".join(plan.names),
                "answer": str(plan.answer),
                "answerer_pid": str(undo["workers"][0]["pid"]),
                "answerer_ports": ",".join(map(str, ports)),
            }
            if plan.spoof:
                summary["spoof_addresses"] = ",".join(map(str, plan.spoof))
        else:
            msgs = build_messages(plan, table, fault_id)
            summary |= {
                "resolvers": ",".join(map(str, plan.resolvers)),
                "blocked": "udp and tcp port 53",
            }
        with Nft.open(plan.netns) as nft:
            nft.commit(msgs, f"dns {fault_id}")
        if plan.names:
            # Sockets already talking to a resolver would bypass the redirect
            # until their flow expires: forget those flows.
            forget_flows(plan.netns, to_resolvers(plan.resolvers))
        return Applied(undo, summary)

    def _start_answerer(
        self, fault_id: str, plan: DnsPlan, undo: DnsUndo, checkpoint: Checkpoint
    ) -> list[int]:
        """Start the fault's answerer in the namespace; its ports, one per resolver."""
        args = [
            "--netns", plan.netns.path,
            "--netns-id", f"{plan.netns.dev}:{plan.netns.ino}",
            "--answer", str(plan.answer),
            "--mark", str(ANSWERER_MARK),
        ]  # fmt: skip
        args += [a for up in plan.upstreams for a in ("--upstream", str(up))]
        args += [a for name in plan.names for a in ("--name", name)]
        args += [a for address in plan.spoof for a in ("--spoof", str(address))]
        said: list[str] = []
        try:
            ref = self.spawn(fault_id, args, on_running=said.append)
        except procs.SpawnError as exc:
            raise FailedPrecondition(f"the DNS answerer did not start: {exc}") from None
        undo["workers"] = [{"pid": ref.pid, "start_time": ref.start_time}]
        checkpoint(undo)
        ports = [int(p) for p in said[0].split(",")] if said and said[0] else []
        if len(ports) != len(plan.resolvers):
            raise FailedPrecondition(f"the DNS answerer said ports {said!r}, not one per resolver")
        return ports

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        if not undo or "netns" not in undo:
            self.kill_workers(fault_id, undo)
            return
        ref = NetnsRef.from_record(undo["netns"])
        try:
            with Nft.open(ref) as nft:
                dropped = nft.drop_table(str(undo["table"]))
            if undo.get("workers"):
                forget_flows(ref, redirected)  # their translation outlives the table
        finally:
            self.kill_workers(fault_id, undo)  # after the redirect is gone
        log.info("dns fault reverted", fault_id=fault_id, netns=ref.label, dropped=dropped)

    def sweep(self) -> list[str]:
        swept = []
        for ref in [netns.own(), *netns.named_namespaces()]:
            try:
                with Nft.open(ref) as nft:
                    mine = nft.drop_tables(self._prefix)
                if mine:
                    forget_flows(ref, redirected)
            except (OSError, Gone) as exc:
                log.warning("dns sweep skipped a namespace", netns=ref.label, error=str(exc))
                continue
            swept += [f"nft table inet {t} in {ref.label}" for t in mine]
        return swept + super().sweep()
