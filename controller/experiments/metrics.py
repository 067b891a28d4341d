"""The controller's Prometheus metrics, served by `brownout serve` or `run --metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.experiments_total = Counter(
            "chaos_experiments_total",
            "Experiment runs by end state (completed, failed, aborted, interrupted)",
            ["result"],
            registry=self.registry,
        )
        self.experiment_duration_seconds = Histogram(
            "chaos_experiment_duration_seconds",
            "Wall time of experiment runs, pre-flight to last revert",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=self.registry,
        )
        self.blast_radius_percentage = Gauge(
            "chaos_blast_radius_percentage",
            "Share of the inventory with faults from the current run, in percent",
            registry=self.registry,
        )
        self.safety_aborts_total = Counter(
            "chaos_safety_aborts_total",
            "Runs aborted for safety, by reason (stop condition name, unreachable, error)",
            ["reason"],
            registry=self.registry,
        )
        self.rollbacks_total = Counter(
            "chaos_rollbacks_total",
            "Rollbacks by type: fault_revert (a fault the controller reverted at the end of a"
            " run) or action (an experiment's rollback action)",
            ["rollback_type"],
            registry=self.registry,
        )
        self.fault_active = Gauge(
            "chaos_fault_active",
            "1 while a run's fault is active on an agent (for Grafana annotations)",
            ["kind", "agent", "run"],
            registry=self.registry,
        )
        self.impact_error_rate = Gauge(
            "chaos_impact_error_rate",
            "Share of an impact probe's last 20 samples out of tolerance",
            ["probe"],
            registry=self.registry,
        )
        self.impact_latency_seconds = Histogram(
            "chaos_impact_latency_seconds",
            "Latency an impact probe measured (HTTP probes)",
            ["probe"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.impact_availability = Gauge(
            "chaos_impact_availability",
            "Share of an impact probe's samples in tolerance while the current run's faults are on",
            ["probe"],
            registry=self.registry,
        )
        self.runs_skipped_total = Counter(
            "chaos_runs_skipped_total",
            "Scheduled occurrences that did not run, by reason (paused, kill_switch, blackout,"
            " window, max_runs, running, missed, experiment, refused)",
            ["reason"],
            registry=self.registry,
        )
        self.scheduled_runs_total = Counter(
            "chaos_scheduled_runs_total",
            "Runs started by a schedule",
            ["schedule"],
            registry=self.registry,
        )
        self.replicas = Gauge(
            "chaos_controller_replicas",
            "Controller replicas on the store, by state (live, or lost: silent past the"
            " replica timeout)",
            ["state"],
            registry=self.registry,
        )
        self.runs_taken_over_total = Counter(
            "chaos_runs_taken_over_total",
            "Runs of a lost replica that this one marked interrupted",
            registry=self.registry,
        )
        self.store_heartbeat_failures_total = Counter(
            "chaos_store_heartbeat_failures_total",
            "Heartbeats of this replica that the store did not take",
            registry=self.registry,
        )
        for result in ("completed", "failed", "aborted", "interrupted"):
            self.experiments_total.labels(result)
        for kind in ("fault_revert", "action"):
            self.rollbacks_total.labels(kind)

    def serve(self, listen: str) -> int:
        """Serve /metrics on host:port (port 0 picks one); returns the bound port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
        )
        return int(server.server_port)
