"""Python providers and controls run code in the controller: `brownout serve`
allows only the modules its operator listed (--python-module), and refuses
any other before importing it, with the field named."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.experiments import pyfuncs
from tests.service.conftest import Api

pytestmark = pytest.mark.unit


@pytest.fixture
def policy() -> Iterator[None]:
    pyfuncs.allow(("tests.ctk",))
    yield
    pyfuncs.allow(None)


def doc(module: str, func: str, arguments: dict[str, Any]) -> dict[str, Any]:
    provider = {"type": "python", "module": module, "func": func, "arguments": arguments}
    return {"title": "python", "method": [{"type": "action", "name": "a", "provider": provider}]}


def test_serve_refuses_modules_it_was_not_told_to_allow(api: Api, policy: None) -> None:
    assert "this" not in sys.modules
    refused = api.call("POST", "/api/v1/runs", {"experiment": doc("this", "x", {})})
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["field"] == "method[0].provider.module"
    assert "'this' is not allowed here (allowed: tests.ctk)" in body["error"]
    assert "this" not in sys.modules  # refused before it was imported
    os_system = doc("os", "system", {"command": "true"})
    assert api.call("POST", "/api/v1/runs", {"experiment": os_system}).status_code == 400
    control = {"title": "c", "method": [{"type": "action", "name": "a", "provider": {
        "type": "python", "module": "tests.ctk.funcs", "func": "add",
        "arguments": {"a": 1, "b": 2}}}],
        "controls": [{"name": "c", "provider": {"type": "python", "module": "os"}}]}  # fmt: skip
    refused = api.call("POST", "/api/v1/runs", {"experiment": control})
    assert refused.status_code == 400 and refused.json()["field"] == "controls[0].provider.module"


def test_serve_runs_an_allowed_module(api: Api, policy: None) -> None:
    started = api.call("POST", "/api/v1/runs", {"experiment": doc("tests.ctk.funcs", "add",
                                                                  {"a": 2, "b": 3})})  # fmt: skip
    assert started.status_code in (200, 201, 202), started.text
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 20
    journal = api.call("GET", f"/api/v1/runs/{run_id}").json()
    while journal["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        journal = api.call("GET", f"/api/v1/runs/{run_id}").json()
    assert journal["status"] == "completed", journal
    assert journal["run"][0]["output"] == 5
