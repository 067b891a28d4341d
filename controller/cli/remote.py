"""The CLI against a `brownout serve` (--server URL) instead of embedded:
`run` submits the experiment and follows its events, `halt` engages the
kill switch, `kill-switch engage|disengage|status` works the lever. The token
comes from BROWNOUT_TOKEN, --token-file, or DATA_DIR/local-token; with a client
certificate (BROWNOUT_SERVER_CERT and BROWNOUT_SERVER_KEY, for a server with
mutual TLS) no token is needed. BROWNOUT_SERVER_CA names the server's CA."""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from controller.cli.commands import exit_code
from controller.errors import ConfigError
from controller.experiments import journal as jr


class RemoteError(Exception):
    pass


class Client:
    def __init__(self, base: str, token: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=os.environ.get("BROWNOUT_SERVER_CA"))
        cert, key = os.environ.get("BROWNOUT_SERVER_CERT"), os.environ.get("BROWNOUT_SERVER_KEY")
        if cert and key:
            self._ssl.load_cert_chain(cert, key)

    def _request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        return req

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            with urllib.request.urlopen(
                self._request(method, path, body), timeout=self.timeout, context=self._ssl
            ) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except ValueError:
                detail = exc.reason
            raise RemoteError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise RemoteError(f"{self.base}: cannot reach the server: {exc.reason}") from None

    def events(self, run_id: str) -> Any:
        """Yield each event's data until the stream's end event."""
        req = self._request("GET", f"/api/v1/runs/{run_id}/events")
        with urllib.request.urlopen(req, timeout=60, context=self._ssl) as resp:
            kind, data = "message", ""
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and data:
                    yield kind, json.loads(data)
                    kind, data = "message", ""


def token(args: argparse.Namespace) -> str:
    if os.environ.get("BROWNOUT_TOKEN"):
        return os.environ["BROWNOUT_TOKEN"].strip()
    if os.environ.get("BROWNOUT_SERVER_CERT") and not args.token_file:
        return ""  # the client certificate identifies the caller
    path = args.token_file or Path(args.data_dir) / "local-token"
    try:
        return Path(path).read_text().strip()
    except OSError:
        raise ConfigError(
            "--token-file",
            f"no token: set BROWNOUT_TOKEN or give a token file ({path} cannot be read)",
        ) from None


def run(c: Client, args: argparse.Namespace) -> int:
    try:
        doc = yaml.safe_load(Path(args.experiment).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(args.experiment), f"cannot read: {exc}") from None
    body: dict[str, Any] = {"experiment": doc, "override_window": bool(args.override_window)}
    if args.seed is not None:
        body["seed"] = args.seed
    started = c.call("POST", "/api/v1/runs", body)
    run_id = started["run_id"]
    print(f"run {run_id}: {started['title']} on {c.base}", file=sys.stderr, flush=True)

    def abort(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signum, signal.SIG_IGN)  # once; the server does the reverting
        c.call("POST", f"/api/v1/runs/{run_id}/abort", {"reason": "Ctrl-C in the CLI"})

    previous = {s: signal.signal(s, abort) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for kind, data in c.events(run_id):
            if kind == "end":
                break
            print(data["message"], file=sys.stderr, flush=True)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    journal = c.call("GET", f"/api/v1/runs/{run_id}")
    print(jr.dumps(journal) if args.json else jr.summary(journal))
    return exit_code(journal)


def kill_switch(c: Client, action: str, reason: str) -> int:
    if action == "status":
        state = c.call("GET", "/api/v1/kill-switch")
    elif action == "engage":
        state = c.call("POST", "/api/v1/kill-switch", {"engaged": True, "reason": reason})
    else:
        state = c.call("POST", "/api/v1/kill-switch", {"engaged": False})
    print(json.dumps(state, indent=2))
    return 0 if not state.get("agents_failed") else 2


def main(args: argparse.Namespace) -> int:
    c = Client(args.server, token(args), args.timeout)
    try:
        if args.command == "run":
            return run(c, args)
        if args.command == "halt":
            reason = args.reason or "brownout halt from the CLI"
            return kill_switch(c, "engage", reason)
        if args.command == "kill-switch":
            return kill_switch(c, args.action, args.reason)
        if args.command == "schedules":
            from controller.cli import schedules  # it imports this module

            return schedules.main(c, args)
        if args.command == "monkey":
            from controller.cli import monkeys  # it imports this module

            return monkeys.main(c, args)
        if args.command == "note":
            out = c.call("POST", f"/api/v1/runs/{args.run_id}/notes", {"text": args.text})
            print(f"noted in run {out['run_id']} at {out['at']}")
            return 0
        if args.command == "gameday":
            from controller.cli import gamedays  # it imports this module

            return gamedays.main(c, args)
        if args.command == "report":
            from controller.cli import report  # it imports this module

            return report.remote(c, args)
        if args.command == "maturity":
            from controller.cli import maturity  # it imports this module

            return maturity.remote(c, args)
    except RemoteError as exc:
        print(f"brownout: {exc}", file=sys.stderr)
        return 2
    print(f"brownout: {args.command} does not run against a server", file=sys.stderr)
    return 2
