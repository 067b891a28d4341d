"""`make run`: a local agent, a demo HTTP service, and an experiment through the controller.

Starts brownout-agent on loopback with a throwaway state dir and a small HTTP
service, then runs examples/local-demo.yaml with `brownout run`: the
service's steady state is checked, a 50 % CPU hog runs on one core under a
lease (its measured burn is printed), a stop condition watches the service,
and everything is reverted. Prints the journal summary and the history, and
checks that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.fleet import Fleet
from controller.cli.children import dies_with_me
from controller.cli.render import fault_table

EXPERIMENT = Path(__file__).resolve().parents[2] / "examples" / "local-demo.yaml"


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
        preexec_fn=dies_with_me(),
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
    with Fleet(inventory.build(agents=[address])) as fleet:
        while not stop.is_set():
            listed = fleet.map(lambda c: c.list_faults(states=[pb.FAULT_STATE_ACTIVE]))
            active = listed[address].value or []
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


def serve_demo_service() -> ThreadingHTTPServer:
    """The system under test: answers 200 on any path."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="brownout-demo-") as tmp:
        state_dir = Path(tmp) / "state"
        print(f"== starting brownout-agent (state dir {state_dir})", flush=True)
        agent, address = start_agent(state_dir)
        service = serve_demo_service()
        service_url = f"http://127.0.0.1:{service.server_address[1]}/"
        try:
            print(f"== agent on {address}, demo service on {service_url}", flush=True)
            subprocess.run([sys.executable, "-m", "controller.cli", "--agent", address, "agents"])
            argv = [
                "run",
                str(EXPERIMENT),
                "--agent",
                address,
                "--data-dir",
                str(Path(tmp) / "data"),
            ]
            print(f"\n== brownout {' '.join(argv)}", flush=True)
            stop = threading.Event()
            meter = threading.Thread(target=measure_while_active, args=(address, stop))
            meter.start()
            run = subprocess.run(
                [sys.executable, "-m", "controller.cli", *argv],
                env={**os.environ, "SERVICE_URL": service_url},
            )
            stop.set()
            meter.join()
            print("\n== brownout history", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "controller.cli",
                    "history",
                    "--data-dir",
                    str(Path(tmp) / "data"),
                ]
            )
            with Fleet(inventory.build(agents=[address])) as fleet:
                faults = fleet.map(lambda c: c.list_faults())[address].value or []
            print("\n== faults on the agent afterwards", flush=True)
            print(fault_table(faults))
            leftovers = [
                pid
                for f in faults
                for pid in map(int, filter(None, f.applied.get("worker_pids", "").split(",")))
                if psutil.pid_exists(pid)
            ]
            print(f"\n== residue: {len(leftovers)} worker process(es) left", flush=True)
            ok = (
                run.returncode == 0
                and bool(faults)
                and not leftovers
                and all(f.state == pb.FAULT_STATE_REVERTED for f in faults)
            )
        finally:
            service.shutdown()
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
        print("== agent stopped:", "OK, experiment completed and reverted" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
