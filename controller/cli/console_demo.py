"""`make console`: a local agent, the demo HTTP service and `brownout serve`
with the demo experiment stored, so the console can be tried at once.

Prints the console's URL and where its operator token is; Ctrl-C stops
everything (the server reverts what is live, the agent reverts the rest).
Listens on BROWNOUT_CONSOLE_LISTEN (default 127.0.0.1:8470).
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
from pathlib import Path

import yaml

from controller.cli import remote
from controller.cli.children import dies_with_me
from controller.cli.demo import EXPERIMENT, serve_demo_service, start_agent


def main() -> int:
    listen = os.environ.get("BROWNOUT_CONSOLE_LISTEN", "127.0.0.1:8470")
    with tempfile.TemporaryDirectory(prefix="brownout-console-") as tmp:
        agent, address = start_agent(Path(tmp) / "state")
        service = serve_demo_service()
        url = f"http://127.0.0.1:{service.server_address[1]}/"
        data, ready = Path(tmp) / "data", Path(tmp) / "serve-ready.json"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller.cli",
                "serve",
                "--listen",
                listen,
                "--metrics-listen",
                "127.0.0.1:0",
                "--agent",
                address,
                "--data-dir",
                str(data),
                "--ready-file",
                str(ready),
            ],
            env={**os.environ, "SERVICE_URL": url},
            preexec_fn=dies_with_me(),
        )
        stop = threading.Event()
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda *_: stop.set())
        try:
            deadline = time.monotonic() + 30
            while not (ready.exists() and ready.stat().st_size):
                if server.poll() is not None or time.monotonic() > deadline:
                    print("brownout serve did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            port = json.loads(ready.read_text())["api_port"]
            base = f"http://{listen.rsplit(':', 1)[0]}:{port}"
            token_file = data / "local-token"
            client = remote.Client(base, token_file.read_text().strip(), 10)
            doc = yaml.safe_load(EXPERIMENT.read_text())
            client.call("PUT", "/api/v1/experiments/local-demo", {"experiment": doc})
            print(f"\n== console: {base}/console/", flush=True)
            print(f"== sign in with the operator token in {token_file}", flush=True)
            print(f"== agent {address}; demo service {url}; stored experiment local-demo")
            print("== Ctrl-C stops everything", flush=True)
            stop.wait()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=90)
            service.shutdown()
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
