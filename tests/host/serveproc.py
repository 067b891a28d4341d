"""A real `brownout serve` process for the service tests, and a small JSON
client for its API (urllib: the tests speak HTTP like any client)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.cli import remote
from controller.service.auth import digest
from tests.agentproc import AgentProc, wait_for

TOKENS = {"alice": ("operator", "op-token-alice"), "grafana": ("viewer", "view-token-grafana")}
OPERATOR, VIEWER = TOKENS["alice"][1], TOKENS["grafana"][1]


def write_tokens(path: Path) -> Path:
    lines = ["tokens:"] + [
        f"  - {{name: {name}, role: {role}, sha256: {digest(token)}}}"
        for name, (role, token) in TOKENS.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ServeProc:
    data_dir: Path
    agents: list[AgentProc]
    extra: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # e.g. unshare, to seem another host
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    ready: dict[str, Any] = field(default_factory=dict)

    def start(self) -> ServeProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tokens = write_tokens(self.data_dir.parent / f"{self.data_dir.name}-tokens.yaml")
        ready = self.data_dir.parent / f"{self.data_dir.name}-ready.json"
        ready.unlink(missing_ok=True)
        argv = [
            *self.prefix,
            sys.executable,
            "-m",
            "controller.cli",
            "--timeout",
            "5",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            "--tokens",
            str(tokens),
            "--ready-file",
            str(ready),
            *self.extra,
        ]
        for a in self.agents:
            argv += ["--agent", a.address]
        self.log = (self.data_dir.parent / f"{self.data_dir.name}-serve.log").open("a")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, text=True)
        if not wait_for(lambda: ready.exists() and ready.stat().st_size > 0, 30, 0.05):
            self.kill()  # a failed start leaves no server behind
            raise AssertionError(f"serve did not start:\n{self.logs()[-3000:]}")
        self.ready = json.loads(ready.read_text())
        self.port = int(self.ready["api_port"])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        port = self.ready["metrics_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def logs(self) -> str:
        return (self.data_dir.parent / f"{self.data_dir.name}-serve.log").read_text()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; a server that does not stop in time is killed
        (and the wait still fails)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.proc = None
        return rc

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = OPERATOR,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Answer(resp.status, json.loads(resp.read() or b"null"), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, json.loads(exc.read() or b"null"), dict(exc.headers))

    def events(self, run_id: str, token: str = VIEWER) -> Iterator[tuple[str, dict[str, Any]]]:
        """The run's server-sent events, parsed by the CLI's own client."""
        yield from remote.Client(self.url, token, 30).events(run_id)
