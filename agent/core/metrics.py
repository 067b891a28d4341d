"""Prometheus metrics. Gauges are computed at scrape time from live state."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class _OpenStreams(Collector):
    def __init__(self, open_streams: Callable[[], dict[str, int]]) -> None:
        self._open = open_streams

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "brownout_open_streams",
            "Server streams open now, by method (each holds one of the server's threads)",
            labels=["method"],
        )
        for method, n in sorted(self._open().items()):
            family.add_metric([method], n)
        yield family


class _LiveState(Collector):
    def __init__(
        self,
        active: Callable[[], dict[str, int]],
        revert_failed: Callable[[], dict[str, int]],
        leases: Callable[[], int],
        overdue: Callable[[], dict[str, float]],
    ) -> None:
        self._active = active
        self._revert_failed = revert_failed
        self._leases = leases
        self._overdue = overdue

    def collect(self) -> Iterable[Metric]:
        yield _by_kind("brownout_faults_active", "Faults currently applied", self._active())
        yield _by_kind(
            "brownout_faults_revert_failed",
            "Faults whose revert failed and is being retried",
            self._revert_failed(),
        )
        yield GaugeMetricFamily("brownout_leases_active", "Live leases", value=self._leases())
        yield _by_kind(
            "brownout_fault_overdue_seconds",
            "Longest time a fault has stayed applied past its lease deadline or its own end;"
            " 0 when none is overdue",
            self._overdue(),
        )


def _by_kind(name: str, documentation: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["kind"])
    for kind, value in sorted(values.items()):
        family.add_metric([kind], value)
    return family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_* (RSS, CPU, fds, start time): the agent's own footprint.
        ProcessCollector(registry=self.registry)
        self.faults_total = Counter(
            "brownout_faults_total",
            "Inject requests by kind and result (applied, failed, rejected)",
            ["kind", "result"],
            registry=self.registry,
        )
        self.lease_datagrams_total = Counter(
            "brownout_lease_datagrams_total",
            "Lease heartbeat datagrams by result: renewed, or dropped as forged, replayed,"
            " stale, malformed, unknown_key (and error, unanswered)",
            ["result"],
            registry=self.registry,
        )
        self.fault_reverts_total = Counter(
            "brownout_fault_reverts_total",
            "Completed reverts by kind and reason",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.revert_failures_total = Counter(
            "brownout_fault_revert_failures_total",
            "Revert attempts that failed (each is retried)",
            ["kind"],
            registry=self.registry,
        )
        self.lease_expirations_total = Counter(
            "brownout_lease_expirations_total",
            "Leases that expired because their holder stopped renewing",
            registry=self.registry,
        )
        self.rpc_duration_seconds = Histogram(
            "brownout_rpc_duration_seconds",
            "gRPC handling time by method",
            ["method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.audit_total = Counter(
            "brownout_audit_events_total",
            "Mutating RPCs by method and result code",
            ["method", "code"],
            registry=self.registry,
        )

    def register_streams(self, open_streams: Callable[[], dict[str, int]]) -> None:
        """brownout_open_streams{method}: server streams open now."""
        self.registry.register(_OpenStreams(open_streams))

    def register_live_state(
        self,
        active: Callable[[], dict[str, int]],
        revert_failed: Callable[[], dict[str, int]],
        leases: Callable[[], int],
        overdue: Callable[[], dict[str, float]],
    ) -> None:
        self.registry.register(_LiveState(active, revert_failed, leases, overdue))
