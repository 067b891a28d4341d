"""Schedules declared in a file (`brownout serve --schedules`): loaded into the
store with the file as their source, experiment files beside it made
absolute, a bad file refused naming the field, the API refusing to change or
remove them (but pausing them), and a schedule taken out of the file removed
when the file is loaded again."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli.declared_file import load, read_schedules
from controller.errors import ConfigError
from tests.service.conftest import Api, pure_doc

pytestmark = pytest.mark.unit

FILE = """
schedules:
  - name: small
    experiments: [stored-one, ./exp/web.yaml]
    cron: "*/30 * * * *"
    timezone: Europe/Berlin
    blast-radius: 5%
  - name: daily
    experiments: stored-one
    every: 24h
"""


def test_a_file_is_the_source_of_its_schedules(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(FILE)
    docs = read_schedules(path)
    assert docs[0]["experiments"] == ["stored-one", str(tmp_path / "exp" / "web.yaml")]
    load(api.svc.schedules, path, docs, "schedule")
    listed = api.call("GET", "/api/v1/schedules").json()["schedules"]
    assert [(s["name"], s["source"]) for s in listed] == [
        ("daily", str(path)), ("small", str(path)),
    ]  # fmt: skip
    changed = api.call("PUT", "/api/v1/schedules/small", {"schedule": {"every": "1h",
                       "experiments": ["stored-one"]}})  # fmt: skip
    assert changed.status_code == 409 and str(path) in changed.json()["error"]
    assert api.call("DELETE", "/api/v1/schedules/small").status_code == 409
    assert api.call("POST", "/api/v1/schedules/small/pause").json()["paused"] is True
    path.write_text(FILE.split("  - name: daily")[0])
    load(api.svc.schedules, path, read_schedules(path), "schedule")
    names = [s["name"] for s in api.call("GET", "/api/v1/schedules").json()["schedules"]]
    assert names == ["small"]
    # The plan says what a missing experiment means only when it would run.
    api.call("PUT", "/api/v1/experiments/stored-one", {"experiment": pure_doc()})
    assert api.call("GET", "/api/v1/schedules/small/next").status_code == 200


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("schedules: {}", "expected a mapping with schedules"),
        ("schedules:\n  - {name: a, every: 1m}", "schedules[0].experiments"),
        ("schedules:\n  - {name: a, experiments: x, cron: '* *'}", "schedules[0].cron"),
        ("schedules:\n  - {name: a, experiments: x, every: 1m}\n"
         "  - {name: a, experiments: y, every: 2m}", "appears twice"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_naming_the_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        read_schedules(path)
