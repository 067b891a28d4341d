"""Every console action is audited like an API call: one `audit` line with the
caller's identity, the action's path and its result, whatever the outcome."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.service.console import csrf
from tests.service.conftest import OPERATOR, VIEWER, Api, pure_doc

pytestmark = pytest.mark.unit


def sign_in(api: Api, token: str) -> None:
    answer = api.client.post("/console/login", data={"token": token, "next": "/console/"})
    assert answer.status_code == 303, answer.text
    api.client.cookies.set("brownout_token", token)


def post(api: Api, path: str, token: str, **form: Any) -> Any:
    return api.client.post(path, data={"csrf": csrf(token), **form})


def audits(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in logs if e.get("event") == "audit"]


def test_each_console_action_writes_an_audit_line_with_the_caller(api: Api) -> None:
    api.call("PUT", "/api/v1/experiments/demo", {"experiment": pure_doc()})
    sign_in(api, OPERATOR)
    with capture_logs() as logs:
        started = post(api, "/console/runs/start", OPERATOR, experiment="demo", seed="5")
        assert started.status_code == 303, started.text
        run_id = started.headers["location"].rsplit("/", 1)[1]
        aborted = post(api, f"/console/runs/{run_id}/abort", OPERATOR, reason="drill")
        confirm = post(api, "/console/kill-switch/confirm", OPERATOR, reason="drill")
        engage = post(api, "/console/kill-switch/engage", OPERATOR, reason="drill", confirm="yes")
        refused = post(api, "/console/runs/start", OPERATOR, experiment="demo")
        off = post(api, "/console/kill-switch/disengage", OPERATOR)
        forged = api.client.post("/console/kill-switch/disengage", data={"csrf": "forged"})
    assert confirm.status_code == 200 and engage.status_code == 200
    assert refused.status_code == 409 and "kill switch" in refused.text
    assert off.status_code == 303 and forged.status_code == 403
    lines = audits(logs)
    paths = [(a["path"], a["result"]) for a in lines]
    assert paths == [
        ("/console/runs/start", 303),
        (f"/console/runs/{run_id}/abort", aborted.status_code),
        ("/console/kill-switch/confirm", 200),
        ("/console/kill-switch/engage", 200),
        ("/console/runs/start", 409),
        ("/console/kill-switch/disengage", 303),
        ("/console/kill-switch/disengage", 403),
    ]
    assert all(a["caller"] == "token:alice" and a["role"] == "operator" for a in lines)
    assert all(a["via"] == "console" and a["method"] == "POST" for a in lines)
    # The run took the console's seed.
    run = api.svc.runs.get(run_id)
    assert run is not None and run.runner.options.seed == 5


def test_a_viewer_is_refused_and_audited_and_signed_out_callers_are_sent_to_sign_in(
    api: Api,
) -> None:
    with capture_logs() as logs:
        out = post(api, "/console/kill-switch/disengage", VIEWER)
        assert out.status_code == 303 and out.headers["location"].startswith("/console/login")
        sign_in(api, VIEWER)
        denied = post(api, "/console/kill-switch/engage", VIEWER, reason="x", confirm="yes")
        page = api.client.get("/console/runs")
    assert denied.status_code == 403 and page.status_code == 200
    assert not re.search(r'id="start-run"', page.text)  # no start form for a viewer
    lines = audits(logs)
    assert [(a["caller"].startswith("token:"), a["result"]) for a in lines] == [
        (False, 401),
        (True, 403),
    ]
    assert lines[1]["caller"] == "token:grafana"


def test_the_console_start_form_takes_a_seed_and_a_window_override(api: Api) -> None:
    api.call("PUT", "/api/v1/experiments/demo", {"experiment": pure_doc()})
    sign_in(api, OPERATOR)
    page = api.client.get("/console/runs")
    assert 'name="seed"' in page.text and 'name="override_window"' in page.text
    bad = post(api, "/console/runs/start", OPERATOR, experiment="demo", seed="-1")
    assert bad.status_code == 400 and "seed" in bad.text
