"""One OpenTelemetry trace per run: the run, its hypothesis checks, its ramp
steps, and each fault on each agent from its inject to its revert, with
their attributes (kind, agent, lease, step, end reason, probe values at
the edges).

Spans are always made, so every log line of a run and every call to an
agent (W3C `traceparent` in the gRPC metadata, which the agent writes into
its logs and audit lines) carries the run's trace id. They are exported
over OTLP/gRPC by the SDK's batch processor when the standard variables
say where (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
with OTEL_EXPORTER_OTLP_INSECURE, _HEADERS, _CERTIFICATE and the rest as
the SDK reads them; OTEL_SERVICE_NAME names the service), and dropped
otherwise.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

from brownout.version import __version__

_lock = threading.Lock()
_provider: TracerProvider | None = None


def provider() -> TracerProvider:
    global _provider
    with _lock:
        if _provider is None:
            name = os.environ.get("OTEL_SERVICE_NAME") or "brownout-controller"
            _provider = TracerProvider(
                resource=Resource.create({"service.name": name, "service.version": __version__})
            )
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            ):
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter,
                )

                _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return _provider


def _value(v: object) -> Any:
    """An attribute value: bool, int, float or str."""
    return v if isinstance(v, bool | int | float | str) else str(v)


class RunTrace:
    """The spans of one run, from any thread (the runner, the fleet's loop)."""

    def __init__(self, run_id: str, title: str) -> None:
        self._tracer = provider().get_tracer("brownout.controller", __version__)
        self._lock = threading.Lock()
        self.run = self._tracer.start_span(
            "run", attributes={"brownout.run_id": run_id, "brownout.title": title}
        )
        self._ctx = trace.set_span_in_context(self.run)
        self._step: Span | None = None
        self._faults: dict[tuple[str, str], Span] = {}
        c = self.run.get_span_context()
        self.trace_id = f"{c.trace_id:032x}"

    def _parent(self) -> Context:
        with self._lock:
            return trace.set_span_in_context(self._step) if self._step else self._ctx

    def traceparent(self) -> str:
        """The W3C header for calls made now (parented by the current step)."""
        with self._lock:
            span = self._step or self.run
        c = span.get_span_context()
        return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("traceparent", self.traceparent()),)

    def hypothesis(self, phase: str, result: dict[str, Any] | None) -> None:
        if result is None:
            return
        span = self._tracer.start_span(f"hypothesis {phase}", context=self._ctx)
        span.set_attribute("brownout.steady_state_met", bool(result["steady_state_met"]))
        for p in result["probes"]:
            name = p["activity"].get("name", "")
            span.set_attribute(f"brownout.probe.{name}.tolerance_met", bool(p.get("tolerance_met")))
            span.set_attribute(f"brownout.probe.{name}.value", _value(p.get("tolerance_detail")))
        span.end()

    def step(self, index: int, percent: float, agents: int) -> None:
        with self._lock:
            if self._step is not None:
                self._step.end()
            self._step = self._tracer.start_span(
                f"step {index + 1}",
                context=self._ctx,
                attributes={
                    "brownout.step": index + 1,
                    "brownout.step.percent": percent,
                    "brownout.step.agents": agents,
                },
            )

    def step_end(self, blast_radius: float) -> None:
        with self._lock:
            if self._step is not None:
                self._step.set_attribute("brownout.blast_radius_percent", blast_radius)
                self._step.end()
                self._step = None

    def fault(
        self, agent: str, fault_id: str, kind: str, lease_id: str, step: int, activity: str
    ) -> None:
        """A fault is active: its span runs until fault_ended. Heard again (the
        watch and the inject's answer both tell), what it lacked is filled in."""
        with self._lock:
            known = self._faults.get((agent, fault_id))
        if known is not None:
            if activity:
                known.set_attribute("brownout.activity", activity)
            if step >= 0:
                known.set_attribute("brownout.step", step + 1)
            return
        span = self._tracer.start_span(
            f"fault {kind}",
            context=self._parent(),
            attributes={
                "brownout.fault.kind": kind,
                "brownout.agent": agent,
                "brownout.fault_id": fault_id,
                "brownout.lease_id": lease_id,
                "brownout.step": step + 1,
                "brownout.activity": activity,
            },
        )
        with self._lock:
            self._faults[(agent, fault_id)] = span

    def fault_ended(self, agent: str, fault_id: str, state: str, reason: str) -> None:
        with self._lock:
            span = self._faults.pop((agent, fault_id), None)
        if span is None:
            return
        span.set_attribute("brownout.fault.state", state)
        span.set_attribute("brownout.fault.end_reason", reason)
        if state == "failed":
            span.set_status(Status(StatusCode.ERROR, reason or "failed"))
        span.end()

    def end(self, status: str, reason: str, deviated: bool) -> None:
        with self._lock:
            left = list(self._faults.values())
            self._faults.clear()
            step, self._step = self._step, None
        for span in left:  # never heard ended (a lost lease, a failed revert)
            span.set_attribute("brownout.fault.state", "unknown")
            span.end()
        if step is not None:
            step.end()
        self.run.set_attribute("brownout.status", status)
        self.run.set_attribute("brownout.reason", reason)
        self.run.set_attribute("brownout.deviated", deviated)
        if status not in ("completed",):
            self.run.set_status(Status(StatusCode.ERROR, f"{status}: {reason}"))
        self.run.end()  # exported by the batch processor, or at exit
