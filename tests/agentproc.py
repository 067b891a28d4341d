"""A real brownout-agent process for tests: start, stop, kill -9, restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.daemon import instance_marker
from agent.kernel import procs
from tests.agentclient import AgentClient


@dataclass
class AgentProc:
    state_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    netns: str = ""  # a named network namespace (ip netns) to run in; its files are ours
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    metrics_port: int = 0
    heartbeat_port: int = 0
    log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def instance(self) -> str:
        return instance_marker(self.state_dir)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0, wait_ready: bool = True) -> AgentProc:
        """Start the agent; by default wait until it serves (recovery done)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready = self.state_dir.parent / f"{self.state_dir.name}.ready.json"
        ready.unlink(missing_ok=True)
        self.log_path = self.state_dir.parent / f"{self.state_dir.name}.log"
        log = self.log_path.open("ab")
        # nsenter joins only the network namespace (ip netns exec would also
        # mount a fresh /sys, hiding the cgroup filesystems).
        argv = [
            *(["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []),
            sys.executable,
            "-m",
            "agent.cli",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--state-dir",
            str(self.state_dir),
            "--ready-file",
            str(ready),
            "--log-level",
            "debug",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        log.close()
        if not wait_ready:
            return self
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"agent not ready after {timeout}s:\n{self.logs()}")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        self.port, self.metrics_port = info["port"], info["metrics_port"]
        self.heartbeat_port = int(info.get("heartbeat_port") or 0)
        return self

    def client(self, timeout: float = 10.0) -> AgentClient:
        return AgentClient(self.address, timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the agent reverts everything and exits. One that
        does not exit in time is killed (and the wait still fails)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def sweep(self) -> subprocess.CompletedProcess[str]:
        """`brownout-agent sweep` on this agent's state dir (the agent is not
        running); it must succeed."""
        out = subprocess.run(
            [sys.executable, "-m", "agent.cli", "sweep", "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out

    def logs(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, object]]:
        events = []
        for line in self.logs().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def journal_files(self) -> list[str]:
        journal = self.state_dir / "journal"
        return sorted(p.name for p in journal.iterdir()) if journal.exists() else []

    def marked_processes(self) -> list[procs.MarkedProc]:
        """Its workers; and once it is gone, its worker fork server too (given a
        moment: PR_SET_PDEATHSIG kills the server as the agent exits)."""
        found = procs.find_marked(self.instance)
        if self.proc is None or self.proc.poll() is not None:
            wait_for(lambda: not procs.find_zygotes(self.instance), 2.0)
            found += [
                procs.MarkedProc(z.pid, z.start_time, "") for z in procs.find_zygotes(self.instance)
            ]
        return found


def wait_for(predicate: object, timeout: float, interval: float = 0.01) -> bool:
    """Poll predicate() until true or timeout; returns the last result."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def is_root() -> bool:
    return os.geteuid() == 0
