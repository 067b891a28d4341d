"""One OpenTelemetry trace per run, received by a real OTLP receiver: a gRPC
TraceService the test serves (from the opentelemetry-proto package), and a
`brownout run` against a real agent with the standard OTEL_ variables. The
span tree (run, hypothesis before and after, the step, the fault from inject
to revert under it) and its attributes are checked, and the agent's audit
line for the inject and the controller's log lines carry the same trace id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc

from tests.agentproc import AgentProc, wait_for
from tests.controller_servers import Service, serving

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


class Receiver(ts_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: ts.ExportTraceServiceRequest, context: Any) -> Any:
        with self.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    self.spans += list(ss.spans)
        return ts.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    r = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ts_grpc.add_TraceServiceServicer_to_server(r, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield r, port
    finally:
        server.stop(None)


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_a_run_is_one_trace_down_to_the_agents_audit(
    agent: AgentProc, receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    r, port = receiver
    web = Service()
    with serving(web.respond) as server:
        doc = {
            "title": "traced",
            "steady-state-hypothesis": {"title": "up", "probes": [
                {"type": "probe", "name": "web", "tolerance": 200,
                 "provider": {"type": "http", "url": server.url}}]},
            "method": [{"type": "action", "name": "burn", "provider": {
                "type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 5},
                "duration": "1m"}}],
            "extensions": [{"name": "brownout", "lease-ttl": "5s",
                            "ramp": {"steps": [100], "hold": "1s"},
                            "timeline": {"interval": "0.5s", "recovery": "0s"}}],
        }  # fmt: skip
        path = tmp_path / "e.yaml"
        path.write_text(yaml.safe_dump(doc))
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
               "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "200",
               "OTEL_SERVICE_NAME": "brownout-test"}  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "controller.cli", "--log-level", "info", "run", str(path),
             "--agent", agent.address, "--data-dir", str(tmp_path / "data"), "--json"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    journal = json.loads(done.stdout)
    assert wait_for(lambda: any(s.name == "run" for s in r.spans), 10, 0.1), r.spans
    by_name = {s.name: s for s in r.spans}
    run = by_name["run"]
    trace_id = run.trace_id.hex()
    assert {s.trace_id.hex() for s in r.spans} == {trace_id}
    assert attrs(run)["brownout.run_id"] == journal["extensions"][0]["run_id"]
    assert attrs(run)["brownout.status"] == "completed"
    for name in ("hypothesis before", "hypothesis after", "step 1"):
        assert by_name[name].parent_span_id == run.span_id, name
    assert attrs(by_name["hypothesis before"])["brownout.probe.web.tolerance_met"] is True
    fault = by_name["fault cpu"]
    assert fault.parent_span_id == by_name["step 1"].span_id
    fa = attrs(fault)
    [rec] = journal["extensions"][0]["agents"][agent.address]["faults"]
    assert fa["brownout.agent"] == agent.address and fa["brownout.fault_id"] == rec["fault_id"]
    assert fa["brownout.lease_id"] and fa["brownout.fault.end_reason"] == "client_revert"
    assert fa["brownout.fault.state"] == "reverted" and fa["brownout.step"] == 1
    assert fault.start_time_unix_nano < fault.end_time_unix_nano <= run.end_time_unix_nano
    # The agent wrote the caller's trace id into its audit lines for the run's calls.
    audited = [e for e in agent.log_events() if e.get("event") == "audit"
               and e.get("method") in ("InjectFault", "RevertFault")]  # fmt: skip
    assert {e.get("trace_id") for e in audited} == {trace_id}, audited
    # And every controller log line of the run carries the run and the trace.
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    ran = [x for x in lines if x.get("event") in ("run started", "run ended")]
    run_id = journal["extensions"][0]["run_id"]
    assert len(ran) == 2, lines
    assert all(x.get("run_id") == run_id and x.get("trace_id") == trace_id for x in ran), ran
