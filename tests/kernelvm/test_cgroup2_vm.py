"""cgroup v2 for real, on Debian's kernel in the QEMU guest: a pause freezes
a v2 cgroup through cgroup.freeze (this machine's v2 hierarchy cannot), the
shell counting in it stops, and the thaw lets it go on. The guest
(tests/kernelvm/guest.py) measures; this judges."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kernelvm.vm import GuestRun

pytestmark = [pytest.mark.kernelvm, pytest.mark.timeout(300)]


@pytest.fixture
def pause(guest: GuestRun) -> dict[str, Any]:
    result: dict[str, Any] = guest.result["pause_v2"]
    assert "error" not in result, result["error"]
    return result


def test_a_pause_freezes_a_v2_cgroup_until_its_revert(pause: dict[str, Any]) -> None:
    print(f"\npause v2: {pause['summary']}; counted {pause['count_while_frozen']} while frozen,"
          f" {pause['count_after_thaw']} after the thaw")  # fmt: skip
    assert pause["version"] == 2
    assert pause["summary"]["state"] == "FROZEN"
    # The shell, and the sleep or mv it is running, born in its cgroup.
    assert int(pause["summary"]["processes"]) >= 1
    assert "frozen 1" in pause["frozen_events"]
    assert pause["count_while_frozen"] == 0, "a frozen shell must not count"
    assert "frozen 0" in pause["thawed_events"]
    assert pause["count_after_thaw"] >= 1, "the thawed shell counts again"
