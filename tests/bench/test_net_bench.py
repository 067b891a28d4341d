"""Issue 4 benchmarks, side by side in one run, in a namespace test host:

- shaping: apply + revert of a whole-interface bandwidth fault through
  Brownout (gRPC -> journal -> netlink) vs the `tc` processes that make the
  same change (an HTB root, its class and a bfifo leaf; then one delete);
- partition: apply + revert through Brownout vs `nft -f` with the same rules
  (add the table, then delete it).

Brownout's figure is the whole client round trip of InjectFault plus
RevertFault; each round trip is also set against one `tc` process, the
issue's goal. Run with `make bench`; figures go to bench-results/net.json.

- bandwidth accuracy: iperf3 goodput under a Brownout bandwidth fault and under
  the kernel's HTB set up with `tc class add ... htb rate R`, interleaved per
  rate, as achieved/asked ratios (bench-results/bandwidth.json).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.bench.common import report, summary_ms
from tests.host import iperf
from tests.host.nethosts import net_bed
from tests.leasekeeper import LeaseKeeper

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

RUNS = 200
BANDWIDTH_RATES = [r * 1_000_000 for r in (1, 2, 5, 8, 10, 50, 200, 500)]
NFT_RULES = """table inet bench_cmp {{
  chain input {{ type filter hook input priority raw; policy accept;
    iif "lo" accept
    jump cut_in; }}
  chain output {{ type filter hook output priority raw; policy accept;
    oif "lo" accept
    jump cut_out; }}
  chain cut_in {{ ip saddr {peer} drop; }}
  chain cut_out {{ ip daddr {peer} drop; }}
}}
"""


def timed(fn: object) -> float:
    assert callable(fn)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_shaping_and_partition_apply_revert_latency(tmp_path: Path) -> None:
    # Info-level logs, as deployed (the test default, debug, adds its own cost).
    agent = AgentProc(tmp_path / "state", ["--log-level", "info"]).start()
    figures: dict[str, object] = {}
    try:
        with net_bed() as bed, agent.client() as c:
            lease = c.acquire_lease("bench", 120).lease_id
            target = pb.Target(netns_name=bed.a)
            dev = bed.a_to_b
            shape = pb.FaultSpec(
                bandwidth=pb.BandwidthSpec(rate_bits_per_second=10_000_000, interface=dev)
            )
            cut = pb.FaultSpec(partition=pb.PartitionSpec(peers=[bed.b.v4]))
            tc = ["ip", "netns", "exec", bed.a, "tc"]
            tree = [
                [*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
                [*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
                 "rate", "10mbit"],
                [*tc, "qdisc", "add", "dev", dev, "parent", "1:1", "bfifo", "limit", "350000"],
                [*tc, "qdisc", "del", "dev", dev, "root"],
            ]  # fmt: skip
            rules = tmp_path / "rules.nft"
            rules.write_text(NFT_RULES.format(peer=bed.b.v4))
            nft = ["ip", "netns", "exec", bed.a, "nft"]

            samples: dict[str, list[float]] = {
                k: [] for k in ("bo_tc", "tc", "bo_nft", "nft", "bo_tc_one", "tc_one")
            }

            def brownout(spec: pb.FaultSpec) -> None:
                t0 = time.perf_counter()
                fault = c.inject(lease, spec, 60, target)
                t1 = time.perf_counter()
                assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
                assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
                if spec.HasField("bandwidth"):  # each round trip, for the per-call goal
                    samples["bo_tc_one"] += [t1 - t0, time.perf_counter() - t1]

            def procs(*argvs: list[str]) -> None:
                for argv in argvs:
                    t0 = time.perf_counter()
                    subprocess.run(argv, check=True, capture_output=True, timeout=10)
                    if argv[4] == "tc":
                        samples["tc_one"].append(time.perf_counter() - t0)

            for _ in range(RUNS):  # interleaved, so both see the same machine load
                samples["bo_tc"].append(timed(lambda: brownout(shape)))
                samples["tc"].append(timed(lambda: procs(*tree)))
                samples["bo_nft"].append(timed(lambda: brownout(cut)))
                samples["nft"].append(
                    timed(
                        lambda: procs(
                            [*nft, "-f", str(rules)], [*nft, "delete", "table", "inet", "bench_cmp"]
                        )
                    )
                )
            c.release_lease(lease)
        for key, label in (("bo_tc", "tc"), ("bo_nft", "nft")):
            ours, theirs = summary_ms(samples[key]), summary_ms(samples[label])
            figures[f"{label}_brownout_grpc_apply_revert"] = ours
            figures[f"{label}_processes_apply_revert"] = theirs
            figures[f"{label}_ratio_p50"] = round(ours["p50_ms"] / theirs["p50_ms"], 2)
            figures[f"{label}_ratio_p99"] = round(ours["p99_ms"] / theirs["p99_ms"], 2)
        # The goal: one gRPC round trip (InjectFault or RevertFault) against
        # one `tc qdisc add|del` process.
        ours, theirs = summary_ms(samples["bo_tc_one"]), summary_ms(samples["tc_one"])
        figures["tc_brownout_one_grpc_round_trip"] = ours
        figures["tc_one_process"] = theirs
        figures["tc_one_ratio_p50"] = round(ours["p50_ms"] / theirs["p50_ms"], 2)
        figures["tc_one_ratio_p99"] = round(ours["p99_ms"] / theirs["p99_ms"], 2)
    finally:
        agent.stop()
    report("net", figures)


def test_bandwidth_accuracy_against_tc(tmp_path: Path) -> None:
    """Achieved/asked goodput ratio per rate, Brownout next to tc's HTB."""
    if not iperf.available():
        pytest.skip("apt-get install iperf3")
    agent = AgentProc(tmp_path / "state", ["--log-level", "info"]).start()
    rows: list[dict[str, float]] = []
    try:
        with net_bed() as bed, agent.client() as c:
            lease = c.acquire_lease("bench", 30).lease_id
            keeper = LeaseKeeper(c, lease, 30).start()
            for i, rate in enumerate(BANDWIDTH_RATES):
                seconds, omit = iperf.seconds_for(rate)
                kernel = iperf.tc_reference(bed, 6000 + 2 * i, rate)
                spec = pb.BandwidthSpec(rate_bits_per_second=rate, interface=bed.a_to_b)
                fault = c.inject(
                    lease, pb.FaultSpec(bandwidth=spec), 120, pb.Target(netns_name=bed.a)
                )
                ours = iperf.goodput(bed, 6001 + 2 * i, bed.b.v4, seconds, omit)
                c.revert(fault.id)
                rows.append(
                    {
                        "rate_mbit": rate / 1e6,
                        "brownout_mbit": round(ours / 1e6, 4),
                        "tc_htb_mbit": round(kernel / 1e6, 4),
                        "brownout_ratio": round(ours / rate, 4),
                        "tc_htb_ratio": round(kernel / rate, 4),
                        "brownout_over_tc": round(ours / kernel, 4),
                    }
                )
            keeper.stop()
            c.release_lease(lease)
    finally:
        agent.stop()
    print("\nBandwidth: iperf3 goodput / asked rate (TCP headers cost ~4.4 %)")
    print(f"{'rate':>10} {'brownout':>9} {'tc htb':>9} {'brownout/tc':>12}")
    for r in rows:
        print(f"{r['rate_mbit']:>5g} Mbit {r['brownout_ratio']:>9.3f} {r['tc_htb_ratio']:>9.3f}"
              f" {r['brownout_over_tc']:>12.3f}")  # fmt: skip
    report("bandwidth", {"rows": rows, "tool": "iperf3 -l 16K, goodput at the receiver"})
