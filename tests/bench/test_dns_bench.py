"""DNS answers, side by side in one run on netns test hosts: queries from A to
a resolver in B, straight to it and through the fault's answerer.

- Time until the first failing lookup: from the InjectFault call until a
  matching name gets NXDOMAIN, against a block (nothing to start but a table).
- Latency added to names the fault does not match: the median round trip
  through the answerer against the same resolver without it (goal: at most
  1 ms more).
- The answerer's CPU at 1,000 queries/s, forwarded and answered.

The resolver is a minimal echo in B (the query back with QR set: a NOERROR
with no records), so its own cost is small and the same either way.
Run with `make bench`; figures are printed and written to bench-results/dns.json.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from dnslib import RCODE, DNSRecord

from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient
from tests.agentproc import AgentProc, wait_for
from tests.bench.common import report, summary_ms
from tests.host.nethosts import NetBed, in_ns, net_bed

pytestmark = pytest.mark.bench

MATCHED = "db.brownout.test"
UNMATCHED = "api.brownout.test"
LATENCY_QUERIES = 1000
STARTS = 10
RATE = 1000  # queries per second
LOAD_SECONDS = 5.0


def query(name: str, qid: int) -> bytes:
    q = DNSRecord.question(name)
    q.header.id = qid
    return bytes(q.pack())


class EchoResolver:
    """In B: every query back as a response with no records."""

    def __init__(self, bed: NetBed) -> None:
        def bind() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((bed.b.v4, 53))
            return s

        self.sock = in_ns(bed.b.ns, bind)
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            reply = bytearray(data)
            reply[2] |= 0x80  # QR
            reply[3] = 0x80  # RA, NOERROR
            self.sock.sendto(bytes(reply), peer)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


class Client:
    """A UDP socket in A: its DNS goes through A's nftables, as an app's would."""

    def __init__(self, bed: NetBed) -> None:
        self.sock = in_ns(bed.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self.server = (bed.b.v4, 53)
        self.next_id = 0

    def ask(self, name: str, timeout: float = 1.0) -> tuple[int | None, float]:
        """(rcode, or None on timeout or a send a block refused; seconds)."""
        self.next_id = (self.next_id + 1) & 0xFFFF
        self.sock.settimeout(timeout)
        t0 = time.perf_counter()
        try:
            self.sock.sendto(query(name, self.next_id), self.server)
        except PermissionError:  # a block drops it on the way out (EPERM)
            return None, time.perf_counter() - t0
        try:
            while True:
                data = self.sock.recv(4096)
                if data[:2] == self.next_id.to_bytes(2, "big"):
                    break
        except TimeoutError:
            return None, time.perf_counter() - t0
        return data[3] & 0x0F, time.perf_counter() - t0

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hosts() -> Iterator[tuple[NetBed, Client]]:
    with net_bed() as bed:
        resolver = EchoResolver(bed)
        client = Client(bed)
        try:
            yield bed, client
        finally:
            client.close()
            resolver.close()


def answers(bed: NetBed) -> pb.FaultSpec:
    return pb.FaultSpec(
        dns=pb.DnsSpec(names=[MATCHED], answer=pb.DNS_ANSWER_NXDOMAIN, resolvers=[bed.b.v4])
    )


def time_to_first_failure(
    c: AgentClient, lease: str, spec: pb.FaultSpec, target: pb.Target, client: Client
) -> float:
    t0 = time.perf_counter()
    fault = c.inject(lease, spec, 60, target)
    while True:
        rcode, _ = client.ask(MATCHED, timeout=0.05)
        if rcode != RCODE.NOERROR:  # NXDOMAIN answered, or a block's silence
            break
    elapsed = time.perf_counter() - t0
    c.revert(fault.id)
    return elapsed


def latencies(client: Client, name: str) -> list[float]:
    out = []
    for _ in range(LATENCY_QUERIES):
        rcode, seconds = client.ask(name)
        assert rcode == RCODE.NOERROR
        out.append(seconds)
    return out


def load(client: Client, name: str, answerer: psutil.Process) -> dict[str, float]:
    """RATE queries/s for LOAD_SECONDS: the answerer's CPU and the replies seen."""
    received = [0]
    stop = threading.Event()
    client.sock.settimeout(0.2)

    def drain() -> None:
        while not stop.is_set():
            try:
                client.sock.recv(4096)
                received[0] += 1
            except TimeoutError:
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    data = query(name, 7)
    cpu0 = sum(answerer.cpu_times()[:2])
    t0 = time.perf_counter()
    sent = 0
    while (now := time.perf_counter() - t0) < LOAD_SECONDS:
        due = int(now * RATE)
        while sent < due:
            client.sock.sendto(data, client.server)
            sent += 1
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    cpu = sum(answerer.cpu_times()[:2]) - cpu0
    time.sleep(0.3)
    stop.set()
    reader.join()
    return {
        "queries_per_second": round(sent / wall),
        "answerer_cpu_percent_of_a_core": round(100 * cpu / wall, 1),
        "replies_share": round(received[0] / sent, 4),
    }


def test_dns_answers_against_the_resolver_alone(
    tmp_path: os.PathLike[str], hosts: tuple[NetBed, Client]
) -> None:
    bed, client = hosts
    agent = AgentProc(tmp_path / "state").start()  # type: ignore[operator]
    target = pb.Target(netns_name=bed.a)
    try:
        with agent.client() as c:
            lease = c.acquire_lease("bench", 300).lease_id
            block = pb.FaultSpec(dns=pb.DnsSpec(resolvers=[bed.b.v4]))
            first_answer, first_block = [], []
            for _ in range(STARTS):
                first_answer.append(time_to_first_failure(c, lease, answers(bed), target, client))
                first_block.append(time_to_first_failure(c, lease, block, target, client))

            direct = latencies(client, UNMATCHED)
            fault = c.inject(lease, answers(bed), 300, target)
            through = latencies(client, UNMATCHED)
            answerer = psutil.Process(int(fault.applied["answerer_pid"]))
            forwarded = load(client, UNMATCHED, answerer)
            answered = load(client, MATCHED, answerer)
            c.revert(fault.id)
            direct_after = latencies(client, UNMATCHED)
            c.release_lease(lease)
    finally:
        agent.stop()
    assert wait_for(lambda: not answerer.is_running(), 5)
    baseline = direct + direct_after
    added = statistics.median(through) - statistics.median(baseline)
    first_a, first_b = summary_ms(first_answer), summary_ms(first_block)
    report(
        "dns",
        {
            "first_failing_lookup_answers": first_a,
            "first_failing_lookup_block": first_b,
            "first_failure_ratio_p50": round(first_a["p50_ms"] / first_b["p50_ms"], 2),
            "unmatched_lookup_direct": summary_ms(baseline),
            "unmatched_lookup_through_answerer": summary_ms(through),
            "added_median_ms": round(added * 1000, 3),
            "latency_ratio_p50": round(statistics.median(through) / statistics.median(baseline), 2),
            "load_forwarded": forwarded,
            "load_answered": answered,
            "cpus": os.cpu_count(),
        },
    )
    assert forwarded["replies_share"] > 0.95 and answered["replies_share"] > 0.95
