"""Probe providers: HTTP (status, body, latency), Prometheus instant queries, processes.

Each returns a value for a tolerance to judge; a provider that cannot produce
one raises ProbeError with a reason a person can act on.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.experiments import pyfuncs
from controller.experiments import tolerances as tol
from controller.experiments.model import (
    Activity,
    HttpProvider,
    NativeProvider,
    ProcessProvider,
    PrometheusProvider,
    PythonProvider,
)

MAX_BODY = 1 << 20


class ProbeError(Exception):
    pass


def http(p: HttpProvider) -> dict[str, Any]:
    data = p.body.encode() if p.body is not None else None
    req = urllib.request.Request(p.url, data=data, method=p.method, headers=dict(p.headers))
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=p.timeout) as resp:
            body = resp.read(MAX_BODY)
            status = resp.status
    except urllib.error.HTTPError as exc:  # 4xx/5xx are answers, not failures
        body, status = exc.read(MAX_BODY), exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProbeError(f"{p.method} {p.url}: {reason}") from None
    latency = time.perf_counter() - t0
    return {"status": status, "body": body.decode(errors="replace"), "latency": round(latency, 6)}


def prometheus(p: PrometheusProvider) -> float:
    """One number from an instant query: a scalar, or a vector of exactly one series."""
    url = p.url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": p.query})
    try:
        with urllib.request.urlopen(url, timeout=p.timeout) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except ValueError:
            detail = ""
        raise ProbeError(f"prometheus {p.url}: HTTP {exc.code} {detail}".strip()) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ProbeError(f"prometheus {p.url}: {getattr(exc, 'reason', exc)}") from None
    if doc.get("status") != "success":
        raise ProbeError(f"prometheus: {doc.get('errorType', '')} {doc.get('error', '')}".strip())
    data = doc.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return float(result[1])
    if kind != "vector":
        raise ProbeError(f"prometheus: query returned a {kind}; use an instant vector or scalar")
    if not result:
        if p.empty is not None:
            return p.empty
        raise ProbeError("prometheus: query returned no series (set empty: to give a value)")
    if len(result) > 1:
        raise ProbeError(f"prometheus: query returned {len(result)} series; aggregate it to one")
    return float(result[0]["value"][1])


def process(p: ProcessProvider) -> dict[str, Any]:
    try:
        done = subprocess.run(  # argv list, never a shell
            [p.path, *p.arguments], capture_output=True, text=True, timeout=p.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{p.path}: timed out after {p.timeout:g}s") from None
    except OSError as exc:
        raise ProbeError(f"{p.path}: {exc.strerror}") from None
    return {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def run_provider(activity: Activity) -> Any:
    p = activity.provider
    if isinstance(p, HttpProvider):
        return http(p)
    if isinstance(p, PrometheusProvider):
        return prometheus(p)
    if isinstance(p, ProcessProvider):
        return process(p)
    if isinstance(p, PythonProvider):
        try:
            return pyfuncs.run(p)
        except pyfuncs.CallFailed as exc:
            raise ProbeError(str(exc)) from None
    if isinstance(p, NativeProvider):
        # revert_faults as a rollback: the run reverted its faults already,
        # in every end state, before any rollback (see the brownout rollbacks).
        return {"reverted_by": "brownout run, before the rollbacks"}
    raise ProbeError(f"{activity.name}: a fault is not something a probe can run")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class ProbeRun:
    """One execution of a probe or non-fault action, shaped as a Chaos Toolkit run record."""

    activity: Activity
    output: Any
    error: str
    start: str
    end: str
    duration: float
    verdict: tol.Verdict | None

    @property
    def tolerance_met(self) -> bool:
        return self.verdict is not None and self.verdict.ok

    @property
    def status(self) -> str:
        return "failed" if self.error else "succeeded"

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "activity": dict(self.activity.raw),
            "output": self.output,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "duration": round(self.duration, 6),
        }
        if self.error:
            rec["exception"] = [self.error]
        if self.activity.tolerance is not None:
            rec["tolerance_met"] = self.tolerance_met
            rec["tolerance_detail"] = self.verdict.detail if self.verdict else self.error
        return rec


def execute(activity: Activity) -> ProbeRun:
    """Run a probe (or an http/process action) and judge it against its tolerance."""
    start, t0 = now_iso(), time.monotonic()
    output: Any = None
    error = ""
    try:
        output = run_provider(activity)
    except ProbeError as exc:
        error = str(exc)
    verdict = None
    if activity.tolerance is not None:
        if error:
            verdict = tol.Verdict(False, None, f"probe failed: {error}")
        elif activity.tolerance.kind == "probe":
            verdict = judged(activity.tolerance, output)
        else:
            verdict = tol.check(activity.tolerance, output, activity.provider.text_key)
    return ProbeRun(activity, output, error, start, now_iso(), time.monotonic() - t0, verdict)


def judged(tolerance: tol.Tolerance, value: Any) -> tol.Verdict:
    """A probe tolerance: its function, given value=, accepts with a truthy
    answer; an error rejects (as chaoslib)."""
    judge: Activity = tolerance.probe
    assert isinstance(judge.provider, PythonProvider)
    try:
        answer = pyfuncs.run(judge.provider, {"value": value})
    except pyfuncs.CallFailed as exc:
        return tol.Verdict(False, value, f"tolerance probe {judge.name} failed: {exc}")
    ok = bool(answer)
    verb = "accepted" if ok else "rejected"
    return tol.Verdict(ok, value, f"{verb} by {judge.name} ({judge.provider.qualname})")
