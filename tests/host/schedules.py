"""Helpers of the schedule tests against a real `brownout serve`."""

from __future__ import annotations

from typing import Any

from tests.host.fleet import doc
from tests.host.serveproc import VIEWER, ServeProc

EVERY_5S = "*/5 * * * * *"


def quick() -> dict[str, Any]:
    """A run of about 2 s: a CPU fault held 1 s."""
    return doc(duration="3s", brownout={"lease-ttl": "3s", "ramp": {"steps": [100], "hold": "1s"}})


def put(s: ServeProc, schedule: dict[str, Any]) -> None:
    answer = s.call("PUT", f"/api/v1/schedules/{schedule['name']}", {"schedule": schedule})
    assert answer.status == 200, answer.body


def occurrences(s: ServeProc, name: str, claimed: bool = False) -> list[dict[str, Any]]:
    """What became of the schedule's occurrences, oldest first; those still
    being decided (claimed: a gate is asked, a replaced run reverts) only if asked."""
    body = s.call("GET", f"/api/v1/schedules/{name}", token=VIEWER).body
    return [o for o in reversed(body["occurrences"]) if claimed or o["outcome"] != "claimed"]
