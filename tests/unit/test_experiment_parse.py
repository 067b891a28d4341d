"""Experiment files: the Chaos Toolkit shape, Brownout's extension, and errors that
name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from brownout.v1 import agent_pb2 as pb
from controller.errors import ConfigError
from controller.experiments import model
from controller.experiments import parse as exp
from controller.experiments.planning import fault_durations
from tests.paths import ROOT

pytestmark = pytest.mark.unit

EXAMPLE = ROOT / "examples" / "cpu-steady-state.yaml"

MINIMAL: dict[str, Any] = {
    "title": "t",
    "description": "d",
    "method": [
        {
            "type": "action",
            "name": "burn",
            "provider": {"type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 20}},
        }
    ],
}


def with_(path: str, value: object) -> dict[str, Any]:
    """MINIMAL with one dotted key (list indexes as numbers) replaced."""
    doc = copy.deepcopy(MINIMAL)
    node: Any = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    node[keys[-1]] = value
    return doc


def test_the_documented_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_URL", "http://127.0.0.1:9/x")
    e = exp.load(EXAMPLE)
    assert e.title.startswith("The web tier")
    assert e.hypothesis is not None and len(e.hypothesis.probes) == 2
    probe = e.hypothesis.probes[0].provider
    assert isinstance(probe, model.HttpProvider) and probe.url == "http://127.0.0.1:9/x"
    action = e.fault_actions[0]
    assert isinstance(action.provider, model.FaultProvider)
    assert action.provider.spec == pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=50))
    assert action.provider.duration == 900 and action.pause_after == 5
    s = e.settings
    assert [r.percent for r in s.ramp] == [1, 5, 10, 25, 50] and s.ramp[0].hold == 60
    assert s.selector.text == "role=web" and s.max_fleet_percent == 50 and s.lease_ttl == 15
    assert s.window is not None and s.window.timezone == "Europe/Berlin"
    cond = s.stop_conditions[0]
    assert (cond.name, cond.sustain, cond.interval) == ("error-rate", 30, 5)
    assert isinstance(cond.probe.provider, model.PrometheusProvider)
    assert cond.probe.provider.empty == 0


def test_json_files_and_proto_specs(tmp_path: Path) -> None:
    doc = with_(
        "method.0.provider",
        {"type": "brownout", "fault": "cpu", "spec": {"cores": 2, "load_percent": 30}},
    )
    path = tmp_path / "e.json"
    path.write_text(json.dumps(doc))
    e = exp.load(path)
    assert e.method[0].provider.spec == pb.FaultSpec(  # type: ignore[union-attr]
        cpu=pb.CpuSpec(cores=2, load_percent=30)
    )
    assert e.settings.mode.kind == "all" and e.settings.lease_ttl == 15


def test_defaults_without_a_brownout_extension() -> None:
    e = exp.parse(MINIMAL)
    assert [(r.percent, r.hold) for r in e.settings.ramp] == [(100, 0)]
    # No duration: the fault outlives the planned run by the margin, and is reverted at the end.
    assert fault_durations(e) == {"burn": 60.0}


def test_configuration_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    doc = with_("configuration", {"url": {"type": "env", "key": "NOPE"}})
    doc["steady-state-hypothesis"] = {
        "probes": [
            {
                "type": "probe",
                "name": "p",
                "tolerance": 200,
                "provider": {"type": "http", "url": "${url}"},
            }
        ]
    }
    with pytest.raises(ConfigError, match="NOPE is not set"):
        exp.parse(doc)
    monkeypatch.setenv("NOPE", "http://127.0.0.1:1/")
    assert exp.parse(doc).hypothesis.probes[0].provider.url == "http://127.0.0.1:1/"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("doc", "where", "message"),
    [
        (with_("title", ""), "title", "needs a title"),
        (with_("method", []), "method", "non-empty"),
        (with_("method.0.provider.fault", "laser"), "method[0].provider.fault", "unknown fault"),
        (
            with_("method.0.provider.arguments", {"cores": 1}),
            "method[0].provider.arguments.load",
            "is required",
        ),
        (
            with_("method.0.provider.arguments", {"cores": 1, "load": 20, "colour": "red"}),
            "method[0].provider.arguments.colour",
            "unknown argument for cpu",
        ),
        (
            with_("method.0.provider.duration", "soon"),
            "method[0].provider.duration",
            "invalid duration",
        ),
        (with_("method.0.provider.type", "lambda"), "method[0].provider.type", "unsupported"),
        (with_("method.0.pauses", {"during": 1}), "method[0].pauses", "unknown key"),
        (
            with_("extensions", [{"name": "brownout", "stop-condition": []}]),
            "extensions[brownout]",
            "unknown key",
        ),
        (
            with_("extensions", [{"name": "brownout", "targets": {"mode": "MOST"}}]),
            "extensions[brownout].targets.mode",
            "ALL, COUNT",
        ),
        (
            with_("extensions", [{"name": "brownout", "ramp": {"steps": [10, 5]}}]),
            "extensions[brownout].ramp.steps[1]",
            "must not decrease",
        ),
        (
            with_(
                "extensions",
                [
                    {
                        "name": "brownout",
                        "stop-conditions": [
                            {"name": "x", "provider": {"type": "http", "url": "http://127.0.0.1:1"}}
                        ],
                    }
                ],
            ),
            "extensions[brownout].stop-conditions[0].tolerance",
            "needs a tolerance",
        ),
        (
            with_("extensions", [{"name": "brownout", "targets": {"max-fleet-percent": 0}}]),
            "extensions[brownout].targets.max-fleet-percent",
            r"\(0, 100\]",
        ),
        (
            with_("rollbacks", [MINIMAL["method"][0]]),
            "rollbacks[0].provider.type",
            "always reverts",
        ),
    ],
)
def test_errors_name_the_field(doc: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        exp.parse(doc)
    assert err.value.where == where, str(err.value)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("title: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        exp.load(path)
    assert err.value.where == str(path)
    assert yaml.safe_load(EXAMPLE.read_text())["extensions"][0]["name"] == "brownout"
