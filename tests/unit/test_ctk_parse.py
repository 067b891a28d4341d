"""Chaos Toolkit constructs in experiment files: each is read as chaoslib
reads it, and bad input is refused with the field named, before any agent is
contacted."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from controller.errors import ConfigError
from controller.experiments import parse as exp
from controller.experiments.model import FaultProvider, NativeProvider, PythonProvider
from controller.experiments.records import RunJournal

pytestmark = pytest.mark.unit

ADD = {"type": "python", "module": "tests.ctk.funcs", "func": "add", "arguments": {"a": 1, "b": 2}}


def base() -> dict[str, Any]:
    return {
        "title": "t",
        "description": "d",
        "steady-state-hypothesis": {
            "title": "h",
            "probes": [{"type": "probe", "name": "sum", "tolerance": 3, "provider": dict(ADD)}],
        },
        "method": [{"type": "action", "name": "add", "provider": dict(ADD)}],
    }


def edit(path: str, value: object, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    d = copy.deepcopy(doc or base())
    node: Any = d
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return d


@pytest.mark.parametrize(
    ("doc", "where", "message"),
    [
        (edit("method.0.provider.module", "no.such.module"), "method[0].provider.module",
         "cannot import 'no.such.module'"),
        (edit("method.0.provider.func", "sub"), "method[0].provider.func",
         "has no function 'sub'; it has add, at_least, fail"),
        (edit("method.0.provider.arguments", {"a": 1, "b": 2, "c": 3}),
         "method[0].provider.arguments", "unexpected keyword argument 'c'"),
        (edit("method.0.provider.arguments", {"a": 1}), "method[0].provider.arguments",
         "missing a required argument: 'b'"),
        (edit("steady-state-hypothesis.probes.0.tolerance", {"type": "jsonpath", "path": "$.[?("}),
         "steady-state-hypothesis.probes[0].tolerance.path", "not a JSONPath"),
        (edit("method.0", {"ref": "nothing"}), "method[0].ref", "no activity named 'nothing'"),
        (edit("secrets", {"s": {"token": {"type": "env", "key": "BROWNOUT_NO_SUCH_VAR"}}}),
         "secrets.s.token", "BROWNOUT_NO_SUCH_VAR is not set"),
        (edit("secrets", {"s": {"token": {"type": "file", "path": "/nonexistent/token"}}}),
         "secrets.s.token.path", "cannot read /nonexistent/token"),
        (edit("method.0.provider.secrets", ["nope"]), "method[0].provider.secrets",
         "no secret scope 'nope'"),
        (edit("runtime", {"rollbacks": {"strategy": "sometimes"}}), "runtime.rollbacks.strategy",
         "one of default, always, never, deviated"),
        (edit("runtime", {"hypothesis": {"strategy": "weekly"}}), "runtime.hypothesis.strategy",
         "continuously"),
        (edit("controls", [{"name": "c", "provider": {"type": "python", "module": "no.such"}}]),
         "controls[0].provider.module", "cannot import"),
        (edit("method.0.provider", {"type": "python", "module": "chaosbrownout.actions",
                                    "func": "inject_fault", "arguments": {"kind": "heat"}}),
         "method[0].provider.arguments.kind", "unknown fault 'heat'"),
        (edit("method.0.provider", {"type": "python", "module": "chaosbrownout.actions",
                                    "func": "revert_faults"}),
         "method[0].provider.func", "put revert_faults in rollbacks"),
        (edit("steady-state-hypothesis.probes.0.tolerance",
              {"type": "probe", "name": "j", "provider": {"type": "http", "url": "http://x"}}),
         "steady-state-hypothesis.probes[0].tolerance.provider.type", "python function"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(doc: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        exp.parse(doc)
    assert err.value.where == where


def test_the_portable_fault_is_the_native_fault() -> None:
    """`python: chaosbrownout.actions.inject_fault` is recognised, never imported,
    and means exactly what `type: brownout` means."""
    args = {"cores": 1, "load": 50}
    portable = edit("method.0.provider", {
        "type": "python", "module": "chaosbrownout.actions", "func": "inject_fault",
        "arguments": {"kind": "cpu", "arguments": args, "duration": "30s"},
    })  # fmt: skip
    native = edit("method.0.provider", {"type": "brownout", "fault": "cpu", "arguments": args,
                                        "duration": "30s"})  # fmt: skip
    a, b = exp.parse(portable).method[0].provider, exp.parse(native).method[0].provider
    assert isinstance(a, FaultProvider) and a == b
    revert_faults = {"type": "python", "module": "chaosbrownout.actions", "func": "revert_faults"}
    revert = edit("rollbacks", [{"type": "action", "name": "r", "provider": revert_faults}])
    assert isinstance(exp.parse(revert).rollbacks[0].provider, NativeProvider)


def test_refs_take_the_named_activity() -> None:
    doc = edit("method", [{"ref": "sum"}, {"type": "action", "name": "add", "provider": ADD},
                          {"ref": "add"}])  # fmt: skip
    method = exp.parse(doc).method
    assert [a.name for a in method] == ["sum", "add", "add"]
    assert method[0].type == "probe" and method[0].raw["name"] == "sum"


def test_secrets_stay_out_of_the_journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-secret\n")
    monkeypatch.setenv("BROWNOUT_TEST_TOKEN", "env-secret")
    doc = edit(
        "secrets",
        {
            "s": {
                "a": {"type": "env", "key": "BROWNOUT_TEST_TOKEN"},
                "b": {"type": "file", "path": str(token)},
                "c": "inline-secret",
            }
        },
    )
    doc = edit("method.0.provider", {**ADD, "func": "whoami", "arguments": {}, "secrets": ["s"]},
               doc)  # fmt: skip
    doc["method"].append({"type": "action", "name": "echo", "provider": {
        "type": "http", "url": "http://127.0.0.1:1/${a}"}})  # fmt: skip
    e = exp.parse(doc)
    assert e.secrets == {"s": {"a": "env-secret", "b": "file-secret", "c": "inline-secret"}}
    p = e.method[0].provider
    assert isinstance(p, PythonProvider) and "-secret" not in repr(p)
    text = repr(RunJournal(e, "r", "").to_dict())
    for value in ("env-secret", "file-secret", "inline-secret"):
        assert value not in text


def test_configuration_keeps_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWNOUT_TEST_A", "7")
    doc = edit("configuration", {"a": {"type": "env", "key": "BROWNOUT_TEST_A",
                                       "env_var_type": "int"}, "b": 5})  # fmt: skip
    doc = edit("method.0.provider.arguments", {"a": "${a}", "b": "${b}"}, doc)
    p = exp.parse(doc).method[0].provider
    assert isinstance(p, PythonProvider) and p.arguments == {"a": 7, "b": 5}


def test_convert_writes_the_portable_form_that_means_the_same() -> None:
    """`brownout convert`: each brownout fault becomes chaosbrownout.actions.inject_fault
    (its duration written out), the control is declared, and `brownout run`
    reads the result as exactly the same faults; what chaos run cannot read is named."""
    from controller.experiments.convert import convert

    doc = edit("method", [{"type": "action", "name": "hog", "provider": {
        "type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 20}}}])  # fmt: skip
    fast = {"type": "range", "range": [0, 1], "target": "latency"}
    doc["steady-state-hypothesis"]["probes"][0] = {
        "type": "probe", "name": "fast", "tolerance": fast,
        "provider": {"type": "http", "url": "http://127.0.0.1:1/"}}  # fmt: skip
    out, changes = convert(doc)
    provider = out["method"][0]["provider"]
    assert provider["module"] == "chaosbrownout.actions" and provider["func"] == "inject_fault"
    assert provider["arguments"]["kind"] == "cpu" and provider["arguments"]["duration"].endswith(
        "s"
    )
    assert out["controls"][0]["provider"]["module"] == "chaosbrownout.control"
    before, after = exp.parse(doc).method[0].provider, exp.parse(out).method[0].provider
    assert isinstance(before, FaultProvider) and isinstance(after, FaultProvider)
    assert (before.spec, before.target) == (after.spec, after.target)
    assert any("duration" in c for c in changes)
    assert any("not portable" in c and "latency" in c for c in changes)
    again, more = convert(out)
    assert again["method"] == out["method"] and len(again["controls"]) == 1
    assert not [c for c in more if not c.startswith("not portable")]


def test_a_python_activity_runs_off_the_caller_with_its_timeout() -> None:
    """A function past its timeout fails its activity at the timeout (the
    run goes on); an exception fails it with its type and message."""
    import time

    from controller.experiments import probes

    slow = {"type": "python", "module": "tests.ctk.funcs", "func": "wait",
            "arguments": {"seconds": 3}, "timeout": 0.3}  # fmt: skip
    doc = edit("method.0.provider", slow)
    t0 = time.monotonic()
    run = probes.execute(exp.parse(doc).method[0])
    assert time.monotonic() - t0 < 1.5
    assert run.status == "failed" and "did not return within 0.3s" in run.error
    doc = edit("method.0.provider", {**slow, "func": "fail", "arguments": {"message": "boom"}})
    run = probes.execute(exp.parse(doc).method[0])
    assert run.status == "failed" and run.error.endswith("RuntimeError: boom")
    assert run.record()["exception"] == [run.error]
