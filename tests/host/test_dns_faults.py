"""DNS faults in netns test hosts: a real resolver (dnslib) in B, and in A a
client on the system's resolver path (getaddrinfo, with A's own resolv.conf
as `ip netns exec` mounts it) or a dnslib query that shows the answer's code.

A block makes the name fail, a block of another resolver does not. Answers
for names give the matching names the asked error (or spoofed records) over
UDP and TCP, while other names still resolve through the answerer. Revert,
lease expiry, a restarted agent and the offline sweep each bring resolution
back and leave no table and no answerer behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.nethosts import NetBed, in_ns, net_bed, nsrun

pytestmark = pytest.mark.host

NAME = "web.brownout.test"
ADDRESS = "10.231.1.80"
OTHER = "api.brownout.test"
OTHER_ADDRESS = "10.231.1.81"
ZONE = {NAME: ADDRESS, OTHER: OTHER_ADDRESS}
LOOKUP = (
    "import socket, sys\n"
    "try:\n"
    "    print(socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET)[0][4][0])\n"
    "except socket.gaierror as exc:\n"
    "    print('failed', exc.errno)\n"
)


# A query from A straight to a resolver: the answer's code and addresses.
QUERY = (
    "import sys\n"
    "from dnslib import DNSRecord, RCODE\n"
    "q = DNSRecord.question(sys.argv[1], sys.argv[2])\n"
    "try:\n"
    "    r = DNSRecord.parse(q.send(sys.argv[3], 53, tcp=sys.argv[4] == 'tcp', timeout=1))\n"
    "except OSError:\n"
    "    print('timeout')\n"
    "else:\n"
    "    print(RCODE.get(r.header.rcode), *sorted(str(a.rdata) for a in r.rr))\n"
)


class Zone(BaseResolver):  # type: ignore[misc]
    """Two names, and NXDOMAIN for the rest."""

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        if name in ZONE and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ZONE[name]), ttl=5))
        elif name not in ZONE:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@dataclass
class Dns:
    bed: NetBed

    def lookup(self, name: str = NAME) -> str:
        return nsrun(self.bed.a, sys.executable, "-c", LOOKUP, name).strip()

    def query(self, name: str, qtype: str = "A", proto: str = "udp") -> str:
        """Ask B's resolver from A: "NOERROR 10.0.0.1", "NXDOMAIN", "timeout"."""
        return nsrun(self.bed.a, sys.executable, "-c", QUERY, name, qtype, self.bed.b.v4, proto)

    def answerers(self) -> list[str]:
        out = subprocess.run(
            ["pgrep", "-af", "agent.dnsanswer.server"], capture_output=True, text=True
        ).stdout
        return [line for line in out.splitlines() if "pgrep" not in line]

    def tables(self) -> str:
        return nsrun(self.bed.a, "nft", "list", "tables")


@pytest.fixture
def dns() -> Iterator[Dns]:
    with net_bed() as bed:
        conf = Path("/etc/netns") / bed.a
        conf.mkdir(parents=True)
        servers: list[DNSServer] = []
        try:
            # A's resolver is B; one try of a second, so a failure is quick.
            (conf / "resolv.conf").write_text(
                f"nameserver {bed.b.v4}\noptions timeout:1 attempts:1\n"
            )
            quiet = DNSLogger(prefix=False, logf=lambda _s: None)
            for tcp in (False, True):

                def bind(tcp: bool = tcp) -> DNSServer:
                    return DNSServer(Zone(), port=53, address=bed.b.v4, tcp=tcp, logger=quiet)

                server = in_ns(bed.b.ns, bind)  # its socket lives in B
                server.start_thread()
                servers.append(server)
            d = Dns(bed)
            assert wait_for(lambda: d.lookup() == ADDRESS, 10), d.lookup()
            yield d
        finally:
            for s in servers:
                s.stop()
            shutil.rmtree(conf, ignore_errors=True)


def block(*resolvers: str) -> pb.FaultSpec:
    return pb.FaultSpec(dns=pb.DnsSpec(resolvers=list(resolvers)))


def test_a_block_fails_lookups_until_revert(agent: AgentProc, dns: Dns) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, block(), 30, pb.Target(netns_name=dns.bed.a))
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        table = fault.applied["nft_table"].removeprefix("inet ")
        assert table in dns.tables()
        assert dns.lookup().startswith("failed"), "a blocked name must not resolve"
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        assert table not in dns.tables()
        assert dns.lookup() == ADDRESS
        c.release_lease(lease)


def test_a_block_of_another_resolver_leaves_this_one(agent: AgentProc, dns: Dns) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, block(dns.bed.c.v4), 30, pb.Target(netns_name=dns.bed.a))
        assert fault.applied["resolvers"] == f"{dns.bed.c.v4}/32"
        assert dns.lookup() == ADDRESS
        c.revert(fault.id)
        fault = c.inject(lease, block(f"{dns.bed.b.v4}/32"), 30, pb.Target(netns_name=dns.bed.a))
        assert dns.lookup().startswith("failed")
        c.revert(fault.id)
        assert dns.lookup() == ADDRESS
        c.release_lease(lease)


def test_a_block_ends_with_its_lease(agent: AgentProc, dns: Dns) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 2).lease_id
        c.inject(lease, block(), 30, pb.Target(netns_name=dns.bed.a))
        assert dns.lookup().startswith("failed")
        assert wait_for(lambda: "brownout" not in dns.tables(), 5)
        assert dns.lookup() == ADDRESS


@pytest.mark.parametrize("recovery", ["restart", "sweep"])
def test_a_block_outlives_no_agent_kill(agent: AgentProc, dns: Dns, recovery: str) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 60).lease_id
        c.inject(lease, block(), 60, pb.Target(netns_name=dns.bed.a))
    agent.kill()
    assert dns.lookup().startswith("failed")
    if recovery == "restart":
        agent.start()
    else:
        agent.sweep()
    assert "brownout" not in dns.tables()
    assert dns.lookup() == ADDRESS


def answer(names: list[str], kind: pb.DnsAnswer.ValueType, *spoof: str) -> pb.FaultSpec:
    return pb.FaultSpec(dns=pb.DnsSpec(names=names, answer=kind, spoof_addresses=list(spoof)))


@pytest.mark.parametrize(
    ("kind", "code", "lookup"),
    [
        (pb.DNS_ANSWER_NXDOMAIN, "NXDOMAIN", "failed -2"),  # EAI_NONAME
        (pb.DNS_ANSWER_SERVFAIL, "SERVFAIL", "failed -3"),  # EAI_AGAIN
        (pb.DNS_ANSWER_REFUSED, "REFUSED", "failed -3"),
        (pb.DNS_ANSWER_TIMEOUT, "timeout", "failed -3"),
    ],
)
def test_matching_names_get_the_asked_error_and_others_resolve(
    agent: AgentProc, dns: Dns, kind: pb.DnsAnswer.ValueType, code: str, lookup: str
) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, answer([NAME], kind), 30, pb.Target(netns_name=dns.bed.a))
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        # The resolver came from A's resolv.conf.
        assert fault.applied["resolvers"] == dns.bed.b.v4
        for proto in ("udp", "tcp"):
            assert dns.query(NAME, proto=proto).strip() == code, proto
            assert dns.query(OTHER, proto=proto).strip() == f"NOERROR {OTHER_ADDRESS}", proto
        assert dns.lookup(NAME) == lookup
        assert dns.lookup(OTHER) == OTHER_ADDRESS
        assert len(dns.answerers()) == 1
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        assert "brownout" not in dns.tables()
        assert dns.answerers() == []
        assert dns.lookup(NAME) == ADDRESS
        c.release_lease(lease)


def test_a_suffix_spoofs_addresses_under_it(agent: AgentProc, dns: Dns) -> None:
    spoofed = ["192.0.2.7", "2001:db8::7"]
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        spec = answer(["*.Brownout.TEST."], pb.DNS_ANSWER_SPOOF, *spoofed)
        fault = c.inject(lease, spec, 30, pb.Target(netns_name=dns.bed.a))
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        assert dns.lookup(NAME) == "192.0.2.7"
        assert dns.lookup(OTHER) == "192.0.2.7"
        assert dns.query(NAME, "AAAA").strip() == "NOERROR 2001:db8::7"
        assert dns.query(NAME, "MX").strip() == "NOERROR"  # no records of other types
        # Not under the suffix: forwarded, and the resolver's answer comes back.
        assert dns.query("brownout.test").strip() == "NXDOMAIN"
        c.revert(fault.id)
        assert dns.lookup(OTHER) == OTHER_ADDRESS
        c.release_lease(lease)


def test_answers_end_with_their_lease(agent: AgentProc, dns: Dns) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 2).lease_id
        c.inject(lease, answer([NAME], pb.DNS_ANSWER_NXDOMAIN), 30, pb.Target(netns_name=dns.bed.a))
        assert dns.lookup(NAME) == "failed -2"
        assert wait_for(lambda: "brownout" not in dns.tables() and not dns.answerers(), 5)
        assert dns.lookup(NAME) == ADDRESS


@pytest.mark.parametrize("recovery", ["restart", "sweep"])
def test_answers_outlive_no_agent_kill(agent: AgentProc, dns: Dns, recovery: str) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 60).lease_id
        spec = answer([NAME], pb.DNS_ANSWER_SERVFAIL)
        c.inject(lease, spec, 60, pb.Target(netns_name=dns.bed.a))
    agent.kill()
    # The answerer died with the agent; until the table goes, the redirect
    # fails every lookup at once (the documented window).
    assert wait_for(lambda: not dns.answerers(), 5)
    assert dns.query(OTHER).strip() == "timeout"
    if recovery == "restart":
        agent.start()
    else:
        agent.sweep()
    assert "brownout" not in dns.tables()
    assert dns.lookup(NAME) == ADDRESS
    assert dns.answerers() == []


def test_a_socket_that_already_talks_to_the_resolver_meets_the_answers_and_leaves_them(
    agent: AgentProc, dns: Dns
) -> None:
    """One UDP socket throughout (as a long-lived client keeps): its redirected
    flow would outlive the redirect, sending it to the dead answerer's port,
    unless the revert forgets the flow."""
    sock = in_ns(dns.bed.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.settimeout(1.0)

    def ask(name: str) -> str:
        sock.sendto(DNSRecord.question(name).pack(), (dns.bed.b.v4, 53))
        try:
            return str(RCODE.get(DNSRecord.parse(sock.recv(4096)).header.rcode))
        except TimeoutError:
            return "timeout"

    try:
        assert ask(NAME) == "NOERROR"
        with agent.client() as c:
            lease = c.acquire_lease("test", 30).lease_id
            spec = answer([NAME], pb.DNS_ANSWER_REFUSED)
            fault = c.inject(lease, spec, 30, pb.Target(netns_name=dns.bed.a))
            assert ask(NAME) == "REFUSED"
            assert ask(OTHER) == "NOERROR"
            c.revert(fault.id)
            assert ask(NAME) == "NOERROR"
            c.release_lease(lease)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.DnsSpec(names=["bad name"]), "dns.names[0]"),
        (pb.DnsSpec(names=["a.*.example"]), "dns.names[0]"),
        (pb.DnsSpec(answer=pb.DNS_ANSWER_SERVFAIL), "dns.names"),
        (pb.DnsSpec(names=["x.test"], answer=pb.DNS_ANSWER_SPOOF), "dns.spoof_addresses"),
        (pb.DnsSpec(names=["x.test"], spoof_addresses=["192.0.2.1"]), "dns.spoof_addresses"),
        (pb.DnsSpec(names=["x.test"], resolvers=["10.0.0.0/24"]), "dns.resolvers[0]"),
    ],
)
def test_bad_answers_are_refused_and_leave_nothing(
    agent: AgentProc, dns: Dns, spec: pb.DnsSpec, field: str
) -> None:
    import grpc

    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease, pb.FaultSpec(dns=spec), 30, pb.Target(netns_name=dns.bed.a))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (err.value.details() or "")
        c.release_lease(lease)
    assert "brownout" not in dns.tables()
    assert dns.answerers() == []
