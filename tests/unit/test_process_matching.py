"""Which processes a process fault reaches: the filters, the guard and the
choice among matches, on process tables built here."""

from __future__ import annotations

import random
import re

import pytest

from agent.core.errors import FailedPrecondition, InvalidArgument
from agent.core.limits import PROCESS_DENYLIST
from agent.faults.process import matching
from agent.faults.process.matching import Filters, Guard
from agent.kernel.procs.table import PF_KTHREAD, ProcInfo
from brownout.faultspecs import values

pytestmark = pytest.mark.unit


def proc(pid: int, comm: str = "app", *args: str, start: int = 0, ppid: int = 1,
         uid: int = 1000, flags: int = 0) -> ProcInfo:  # fmt: skip
    return ProcInfo(pid, ppid, start or pid, "S", flags, comm, tuple(args), uid)


def guard(**protected: str) -> Guard:
    return Guard(
        {int(k.removeprefix("p")): v for k, v in protected.items()},
        tuple(re.compile(p) for p in PROCESS_DENYLIST),
        allow_denylisted=False,
    )


def test_comm_is_matched_whole_not_as_a_substring() -> None:
    f = Filters(comm=re.compile("ssh"))
    assert f.match(proc(10, "ssh"))
    assert not f.match(proc(11, "sshd")), "a substring match kills the wrong processes"


def test_cmdline_is_searched_and_every_filter_must_hold() -> None:
    f = Filters(cmdline=re.compile(r"--role=worker\b"), uid=33)
    assert f.match(proc(10, "python", "python", "app.py", "--role=worker", uid=33))
    assert not f.match(proc(11, "python", "python", "app.py", "--role=worker", uid=0))
    assert not f.match(proc(12, "python", "python", "app.py", "--role=workers", uid=33))


def test_choose_count_percent_and_order() -> None:
    table = [proc(p, start=s) for p, s in ((10, 300), (11, 100), (12, 200), (13, 400))]
    rng = random.Random(1)
    assert [p.pid for p in matching.choose(table, 2, 0, "oldest", rng)] == [11, 12]
    assert [p.pid for p in matching.choose(table, 1, 0, "newest", rng)] == [13]
    assert len(matching.choose(table, 0, 30, "random", rng)) == 2  # 1.2 rounds up
    assert len(matching.choose(table, 0, 1, "random", rng)) == 1  # never none
    assert len(matching.choose(table, 9, 0, "oldest", rng)) == 4  # no more than matched
    assert matching.choose(table, 0, 0, "random", rng) == table  # all
    drawn = {tuple(p.pid for p in matching.choose(table, 2, 0, "random", random.Random(s)))
             for s in range(20)}  # fmt: skip
    assert len(drawn) > 1, "random picks differ between draws"


def test_the_guard_names_each_reason() -> None:
    g = guard(p1="pid 1 (init)", p500="the agent itself")
    assert g.refusal(proc(1, "systemd")) == "pid 1 (init)"
    assert g.refusal(proc(500, "python")) == "the agent itself"
    assert g.refusal(proc(2, "kthreadd", ppid=0)) == "a kernel thread"
    assert g.refusal(proc(77, "kworker/0:1", ppid=2)) == "a kernel thread"
    assert g.refusal(proc(78, "odd", ppid=40, flags=PF_KTHREAD)) == "a kernel thread"
    worker = proc(90, "brownout-cpu", "python", "--brownout-instance=abc", "--brownout-fault=f")
    assert g.refusal(worker) == "a Brownout worker or fork server"
    assert "denylist" in g.refusal(proc(91, "sshd"))
    assert "denylist" in g.refusal(proc(92, "containerd-shim-runc-v2"))
    assert g.refusal(proc(93, "nginx")) == ""
    lenient = Guard(g.protected, g.denylist, allow_denylisted=True)
    assert lenient.refusal(proc(91, "sshd")) == ""
    assert lenient.refusal(proc(1, "systemd")) == "pid 1 (init)", "only the denylist yields"


def test_a_refusal_groups_the_processes_by_reason() -> None:
    g = guard(p500="the agent itself")
    table = [proc(500, "python", "python", "-m", "agent"), *(proc(p, "sshd") for p in range(3, 8))]
    with pytest.raises(FailedPrecondition) as err:
        matching.refuse_unsafe(table, g)
    text = str(err.value)
    assert text.startswith("refused, nothing was signalled: the agent itself: pid 500")
    assert "and 2 more" in text
    matching.refuse_unsafe([proc(600, "nginx")], g)  # allowed: no error


def test_patterns_and_users_are_checked() -> None:
    with pytest.raises(InvalidArgument, match=r"^process.comm: '\(' is not a regular"):
        matching.compile_pattern("process.comm", "(")
    with pytest.raises(InvalidArgument, match="at most 512"):
        matching.compile_pattern("process.cmdline", "a" * 513)
    assert matching.user_id("process.user", "0") == 0
    assert matching.user_id("process.user", "root") == 0
    with pytest.raises(InvalidArgument, match="no user 'no-such-user-x'"):
        matching.user_id("process.user", "no-such-user-x")


@pytest.mark.parametrize(("text", "number"), [("KILL", 9), ("sigterm", 15), ("2", 2)])
def test_signals_by_name_or_number(text: str, number: int) -> None:
    assert values.signal_number(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "999"])
def test_a_bad_signal_says_what_a_signal_looks_like(text: str) -> None:
    with pytest.raises(ValueError, match="signal"):
        values.signal_number(text)
