"""One file, both tools: every experiment of the corpus runs under the real
`chaos run` (chaostoolkit 1.19, chaostoolkit-lib 1.44) and under `brownout
run`, against the same HTTP service, and the journals agree field by field:
status, deviated, the activities run and their outputs, each steady state,
the rollbacks played; and the python functions and controls were called in
the same order (tests/ctk/funcs.py and control.py write each call down)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ctk import roundtrip as rt
from tests.ctk.service import service

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

TOKEN = "s3cret-t0ken-value"
FILES = sorted(p.name for p in rt.CORPUS.glob("*.yaml"))

# What each run must say (the comparison alone would pass if both tools were
# wrong alike).
EXPECT: dict[str, dict[str, object]] = {
    "12-rollbacks-deviated.yaml": {"deviated": True, "rollbacks": 1},
    "13-rollbacks-never.yaml": {"deviated": True, "rollbacks": 0},
    "14-rollbacks-always.yaml": {"deviated": False, "rollbacks": 1},
    "15-before-method-only.yaml": {"deviated": False, "after": None, "rollbacks": 1},
    "16-after-method-only.yaml": {"deviated": True, "before": None},
    "17-during-method.yaml": {"during": True, "before": None, "after": None},
    "18-fail-fast.yaml": {"status": "failed", "rollbacks": 0, "run": 3},
    "21-failing-action.yaml": {"status": "completed", "run": 2},
}


def test_the_corpus_covers_what_the_runner_reads() -> None:
    text = "\n".join((rt.CORPUS / f).read_text() for f in FILES)
    for feature in ("ref:", "background: true", "controls:", "pauses:", "type: jsonpath",
                    "type: range", "type: regex", "type: probe", "strategy: deviated",
                    "strategy: never", "strategy: always", "before-method-only",
                    "after-method-only", "during-method-only", "fail-fast", "secrets:",
                    "env_var_type"):  # fmt: skip
        assert feature in text, feature
    assert len(FILES) >= 15


@pytest.mark.parametrize("name", FILES)
def test_both_tools_agree(name: str, tmp_path: Path) -> None:
    path = rt.CORPUS / name

    def run(tool: str) -> rt.Outcome:
        # Each tool against its own copy of the service, both at once.
        with service() as (url, _modes):
            env = rt.environment(url, tmp_path / f"{tool}.trace",
                                 {"CTK_TOKEN": TOKEN, "CTK_A": "7"})  # fmt: skip
            return rt.run(tool, path, tmp_path / tool, env)

    with ThreadPoolExecutor(2) as pool:
        outcomes = dict(
            zip(("chaos", "brownout"), pool.map(run, ("chaos", "brownout")), strict=True)
        )
    chaos, brownout = outcomes["chaos"], outcomes["brownout"]
    assert chaos.journal, chaos.output[-3000:]
    assert brownout.journal, brownout.output[-3000:]
    ours, theirs = rt.view(brownout.journal), rt.view(chaos.journal)
    assert ours == theirs
    ordered = "background" not in name
    assert rt.trace_view(brownout.trace, ordered) == rt.trace_view(chaos.trace, ordered)
    # Both exit alike: 0 when completed and not deviated.
    assert (brownout.code == 0) == (chaos.code == 0)
    want = {"status": "completed", "deviated": False, **EXPECT.get(name, {})}
    for key, value in want.items():
        got = ours[key]
        assert (len(got) if key in ("run", "rollbacks") else got) == value, (key, ours)
    # Secrets reach the function, never a journal or a log line.
    for tool, o in outcomes.items():
        for file in (tmp_path / tool).rglob("*"):
            if file.is_file() and file.suffix in (".json", ".log", ".db"):
                assert TOKEN.encode() not in file.read_bytes(), (tool, file)
        assert TOKEN not in o.output
    if name == "19-secrets.yaml":
        assert brownout.journal["run"][0]["output"] == {"service_ok": True, "token_ok": True}


@pytest.mark.parametrize("name", ["05-controls.yaml", "18-fail-fast.yaml"])
def test_chaos_report_reads_brownout_journals(name: str, tmp_path: Path) -> None:
    """chaostoolkit-reporting's `chaos report` renders a journal of `brownout
    run` without error, with its title and status."""
    with service() as (url, _modes):
        env = rt.environment(url, tmp_path / "t.trace")
        o = rt.run("brownout", rt.CORPUS / name, tmp_path / "b", env)
    assert o.journal, o.output[-3000:]
    text = rt.report(tmp_path / "b" / "brownout.json", tmp_path / "report.md", env)
    assert o.journal["experiment"]["title"].split()[0] in text
    assert o.journal["status"] in text
