"""The dashboards and alerts use only metrics and labels the programs export
(PromQL parsed with promql-parser), and cover what operators watch."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache

import promql_parser
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from agent.core.metrics import Metrics
from controller.experiments.metrics import ControllerMetrics
from tests.unit.manifests import (
    ALERTS,
    DASHBOARD,
    GRAFANA_VARIABLES,
    OPERATIONS,
    PROMETHEUS_SERIES,
    TARGET_LABELS,
    Doc,
    load_docs,
)

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ metrics


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the agent and controller export, with its label names."""
    agent = Metrics()
    agent.register_live_state(
        lambda: {"cpu": 1}, lambda: {"cpu": 1}, lambda: 1, lambda: {"cpu": 0.0}
    )
    controller = ControllerMetrics()
    holders: list[tuple[object, CollectorRegistry]] = [
        (agent, agent.registry),
        (controller, controller.registry),
    ]
    series: dict[str, set[str]] = {}
    for holder, registry in holders:
        # Labelled metrics export nothing until a child exists: make one of each.
        for wrapper in vars(holder).values():
            if isinstance(wrapper, MetricWrapperBase) and wrapper._labelnames:
                wrapper.labels(*["x"] * len(wrapper._labelnames))
        for family in registry.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    result = {name: frozenset(labels | TARGET_LABELS) for name, labels in series.items()}
    result.update({k: frozenset(v) for k, v in PROMETHEUS_SERIES.items()})
    return result


def test_the_metric_inventory_sees_both_programs() -> None:
    names = set(exported_series())
    assert {
        "brownout_faults_active",
        "brownout_rpc_duration_seconds_bucket",
        "brownout_fault_revert_failures_total",
        "chaos_experiments_total",
        "chaos_experiment_duration_seconds_bucket",
    } <= names
    assert "le" in exported_series()["brownout_rpc_duration_seconds_bucket"]


def query_problems(expr: str) -> tuple[set[str], list[str]]:
    """Metric names in a PromQL expression, and its references to unknown
    metrics or labels. Raises ValueError if it does not parse."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    tree = promql_parser.parse(expr)
    names: set[str] = set()
    labels: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            labels.update(m.name for m in node.matchers.matchers)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        elif (
            isinstance(node, promql_parser.BinaryExpr)
            and node.modifier is not None
            and node.modifier.matching is not None
        ):
            labels.update(node.modifier.matching.labels)

    promql_parser.walk(tree, visit)
    series = exported_series()
    problems = [f"no such metric: {n}" for n in sorted(names - set(series))]
    known = set().union(*(series[n] for n in names if n in series))
    problems += [f"no such label: {label}" for label in sorted(labels - known - {"__name__"})]
    return names, problems


def test_the_query_checker_catches_unknown_metrics_and_labels() -> None:
    assert query_problems("sum by (kind) (brownout_faults_active)")[1] == []
    assert query_problems("brownout_fault_active")[1] == ["no such metric: brownout_fault_active"]
    assert query_problems("sum by (node) (brownout_faults_active)")[1] == ["no such label: node"]
    with pytest.raises(ValueError):
        query_problems("sum(rate(brownout_faults_total[5m])")


def dashboard_targets() -> Iterator[tuple[str, Doc]]:
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target
    for annotation in dash["annotations"]["list"]:
        if "expr" in annotation:  # a Prometheus annotation: the fault spans
            yield f"annotation {annotation['name']}", {"refId": "annotation", **annotation}


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']} has no query"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    metric = re.fullmatch(r"label_values\((\w+), instance\)", variables["instance"]["definition"])
    assert metric and metric[1] in exported_series()


def test_every_dashboard_query_uses_exported_metrics_and_labels() -> None:
    problems = []
    for title, target in dashboard_targets():
        try:
            _names, found = query_problems(target["expr"])
        except ValueError as exc:
            found = [f"does not parse: {exc}"]
        problems += [f"{title} [{target['refId']}]: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_operators_watch() -> None:
    exprs = [t["expr"] for _title, t in dashboard_targets()]
    used = set().union(*(query_problems(e)[0] for e in exprs))
    assert {
        "brownout_faults_active",
        "brownout_faults_total",
        "brownout_fault_reverts_total",
        "brownout_lease_expirations_total",
        "brownout_fault_revert_failures_total",
        "brownout_faults_revert_failed",
        "chaos_experiments_total",
        "chaos_safety_aborts_total",
        "chaos_blast_radius_percentage",
        "chaos_fault_active",
        "chaos_impact_error_rate",
        "chaos_impact_latency_seconds_bucket",
        "chaos_impact_availability",
        "chaos_rollbacks_total",
    } <= used
    assert any(
        "histogram_quantile" in e and "brownout_rpc_duration_seconds_bucket" in e for e in exprs
    )


# ------------------------------------------------------------------ alerts


def alert_rules() -> list[Doc]:
    groups = load_docs(ALERTS)[0]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    return [rule for g in groups for rule in g["rules"]]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    problems = []
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        try:
            _used, found = query_problems(rule["expr"])
        except ValueError as exc:
            found = [f"does not parse: {exc}"]
        problems += [f"{rule['alert']}: {p}" for p in found]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert not problems, "\n".join(problems)


def test_alerts_cover_revert_failures_and_faults_outliving_leases() -> None:
    by_name = {r["alert"]: r["expr"] for r in alert_rules()}
    assert any("brownout_faults_revert_failed" in e and "> 0" in e for e in by_name.values())
    assert any(
        re.search(r"increase\(brownout_fault_revert_failures_total\[", e) for e in by_name.values()
    )
    outlived = by_name["BrownoutFaultOutlivedLease"]
    assert query_problems(outlived)[0] == {"brownout_fault_overdue_seconds"}


def test_every_alert_has_a_runbook_section() -> None:
    anchors = {github_anchor(m[1]) for m in re.finditer(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        path, _, anchor = runbook.partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no #{anchor}"
