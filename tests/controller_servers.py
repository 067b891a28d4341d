"""Small loopback HTTP servers for controller tests: a service under test and a
Prometheus HTTP API stand-in that answers instant queries from live agents."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.parser import text_string_to_metric_families


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        status, body, ctype = self.server.respond(self.path)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, respond: Callable[[str], tuple[int, str, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(respond: Callable[[str], tuple[int, str, str]]) -> Iterator[_Server]:
    server = _Server(respond)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Service:
    """The system under test: answers 200 'ok' until told otherwise, and counts
    its requests by code on /metrics for Prometheus to scrape."""

    def __init__(self) -> None:
        self.status = 200
        self.body = "ok"
        self.served: dict[int, int] = {}
        self._lock = threading.Lock()

    def respond(self, path: str) -> tuple[int, str, str]:
        if path == "/metrics":
            with self._lock:
                lines = [
                    f'http_requests_total{{code="{code}"}} {n}'
                    for code, n in sorted(self.served.items())
                ]
            return (
                200,
                "# TYPE http_requests_total counter\n" + "\n".join(lines) + "\n",
                "text/plain",
            )
        with self._lock:
            self.served[self.status] = self.served.get(self.status, 0) + 1
        return self.status, self.body, "text/plain"


def vector(value: float | None) -> str:
    result = [] if value is None else [{"metric": {}, "value": [0, repr(float(value))]}]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


class FakePrometheus:
    """Answers /api/v1/query with the sum of a gauge scraped from agents right now.

    Whatever the PromQL text, the value is sum(METRIC) over the given metrics
    endpoints: enough to drive a stop condition from real agent state without
    a Prometheus server.
    """

    def __init__(self, metric: str, endpoints: list[str]) -> None:
        self.metric = metric
        self.endpoints = endpoints
        self.queries: list[str] = []

    def value(self) -> float:
        total = 0.0
        for url in self.endpoints:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == self.metric:
                        total += sample.value
        return total

    def respond(self, path: str) -> tuple[int, str, str]:
        parsed = urllib.parse.urlparse(path)
        if parsed.path != "/api/v1/query":
            return 404, "not found", "text/plain"
        self.queries += urllib.parse.parse_qs(parsed.query).get("query", [])
        return 200, vector(self.value()), "application/json"
