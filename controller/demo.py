"""`make run`: a local agent plus a sample attack through the CLI.

Starts brownout-agent on loopback with a throwaway state dir, runs
`brownout inject cpu --cores 1 --load 50 --duration 6s --lease-ttl 3s`,
measures the workers' CPU while the fault is active, then shows that the
fault was reverted and nothing is left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from brownout.v1 import agent_pb2 as pb
from controller.client import AgentClient
from controller.render import fault_table

ATTACK = ["inject", "cpu", "--cores", "1", "--load", "50", "--duration", "6s", "--lease-ttl", "3s"]


def start_agent(state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = state_dir.parent / "ready.json"
    log = (state_dir.parent / "agent.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--state-dir",
            str(state_dir),
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(
                "agent failed to start:\n" + (state_dir.parent / "agent.log").read_text()
            )
        time.sleep(0.05)
    port = json.loads(ready.read_text())["port"]
    return proc, f"127.0.0.1:{port}"


def measure_while_active(address: str, stop: threading.Event) -> None:
    """Print each active fault's measured CPU share once per second."""
    with AgentClient(address) as client:
        while not stop.is_set():
            active = client.list_faults(states=[pb.FAULT_STATE_ACTIVE])
            for fault in active:
                try:
                    workers = [
                        psutil.Process(int(p)) for p in fault.applied["worker_pids"].split(",")
                    ]
                    before = sum(sum(w.cpu_times()[:2]) for w in workers)
                    time.sleep(1.0)
                    after = sum(sum(w.cpu_times()[:2]) for w in workers)
                except psutil.NoSuchProcess:
                    continue
                print(
                    f"  measured: workers {fault.applied['worker_pids']} on core"
                    f" {fault.applied['cores']} burning {100 * (after - before):.1f}% of a core"
                    f" (asked {fault.applied['load_percent']}%)",
                    flush=True,
                )
            if not active:
                stop.wait(0.1)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="brownout-demo-") as tmp:
        state_dir = Path(tmp) / "state"
        print(f"== starting brownout-agent (state dir {state_dir})", flush=True)
        agent, address = start_agent(state_dir)
        try:
            print(f"== agent serving on {address}", flush=True)
            subprocess.run([sys.executable, "-m", "controller.cli", "--agent", address, "info"])
            print(f"\n== brownout {' '.join(ATTACK)}", flush=True)
            stop = threading.Event()
            meter = threading.Thread(target=measure_while_active, args=(address, stop))
            meter.start()
            attack = subprocess.run(
                [sys.executable, "-m", "controller.cli", "--agent", address, *ATTACK]
            )
            stop.set()
            meter.join()
            print("\n== faults on the agent afterwards", flush=True)
            with AgentClient(address) as client:
                faults = client.list_faults()
                print(fault_table(faults))
            leftovers = [
                pid
                for f in faults
                for pid in map(
                    int,
                    f.applied.get("worker_pids", "").split(",")
                    if f.applied.get("worker_pids")
                    else [],
                )
                if psutil.pid_exists(pid)
            ]
            print(f"\n== residue: {len(leftovers)} worker process(es) left", flush=True)
            ok = (
                attack.returncode == 0
                and not leftovers
                and all(f.state == pb.FAULT_STATE_REVERTED for f in faults)
            )
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
        print("== agent stopped:", "OK, fault applied and reverted" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
