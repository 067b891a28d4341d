"""DNS block in netns test hosts: a real resolver (dnslib) in B, and in A a
client on the system's resolver path (getaddrinfo, with A's own resolv.conf
as `ip netns exec` mounts it). A block makes the name fail, a block of
another resolver does not, and revert, lease expiry, a restarted agent and
the offline sweep each bring resolution back and leave no table behind."""

from __future__ import annotations

import shutil
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
LOOKUP = (
    "import socket\n"
    "try:\n"
    f"    print(socket.getaddrinfo({NAME!r}, 80, socket.AF_INET)[0][4][0])\n"
    "except socket.gaierror as exc:\n"
    "    print('failed', exc.errno)\n"
)


class Zone(BaseResolver):  # type: ignore[misc]
    """One name, and NXDOMAIN for the rest."""

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        if str(request.q.qname).rstrip(".") == NAME and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ADDRESS), ttl=5))
        elif str(request.q.qname).rstrip(".") != NAME:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@dataclass
class Dns:
    bed: NetBed

    def lookup(self) -> str:
        return nsrun(self.bed.a, sys.executable, "-c", LOOKUP).strip()

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
