"""Cut the link between a controller-side lease holder and an agent, each in its
own netns test host: the agent reverts within TTL + 1 s of the cut, and once the
link heals the controller side learns the lease is gone (NOT_FOUND)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProc, wait_for
from tests.host.nethosts import in_ns, net_bed, run
from tests.paths import ROOT
from tests.processes import any_running
from tests.reliability.common import figure

pytestmark = [pytest.mark.host, pytest.mark.reliability]

TTL = 2.0
REPO = ROOT


def alive(pids: list[int]) -> bool:
    return any_running(pids)


def read(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    while True:  # skip the holder's log lines
        line = proc.stdout.readline()
        assert line, f"lease holder exited: {proc.poll()}"
        if line.startswith("HOLDER "):
            return dict(json.loads(line.removeprefix("HOLDER ")))


def test_partition_reverts_within_ttl_and_the_controller_sees_the_lease_lost(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    with net_bed() as bed:
        # The agent lives in host B, serving on B's link address; the holder in A.
        a = AgentProc(
            tmp_path / "state",
            extra_args=["--listen", f"{bed.b.v4}:0", "--insecure-allow-remote"],
        )
        agent_factory.append(a)
        in_ns(bed.b.ns, a.start)  # the agent process is forked inside netns B
        holder = subprocess.Popen(
            ["ip", "netns", "exec", bed.a, sys.executable, "-m",
             "tests.reliability.lease_holder", f"{bed.b.v4}:{a.port}", str(TTL)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            first = read(holder)
            pids = [int(p) for p in first["worker_pids"].split(",")]
            time.sleep(TTL * 1.5)  # renewals flow across the link
            assert alive(pids), "the fault ended while the link was up"
            run("ip", "-n", bed.a, "link", "set", bed.a_to_b, "down")
            cut = time.monotonic()
            assert wait_for(lambda: not alive(pids), TTL + 1, 0.02), "fault outlived TTL + 1 s"
            reverted_in = time.monotonic() - cut
            assert wait_for(lambda: not a.journal_files(), 1)
            assert any(e.get("event") == "lease expired: holder stopped renewing"
                       for e in a.log_events())  # fmt: skip
            lost = read(holder)  # the keeper gives up after retrying for a TTL
            assert lost["lost"], lost

            run("ip", "-n", bed.a, "link", "set", bed.a_to_b, "up")
            assert holder.stdin is not None
            holder.stdin.write("healed\n")
            holder.stdin.flush()
            renew = read(holder)
            assert renew["renew"] == "NOT_FOUND", renew
            assert holder.wait(10) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
            a.stop()
    figure(
        "controller-agent partition",
        ttl_s=TTL,
        reverted_after_cut_s=round(reverted_in, 2),
        keeper_lost_reason=lost["lost"][:40],
        renew_after_heal=renew["renew"],
    )
