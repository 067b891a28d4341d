"""The agent reads a caller's W3C traceparent for its logs: a well-formed
header gives its trace id; anything else gives none, never an error."""

from __future__ import annotations

import pytest

from agent.api.tracecontext import trace_id

pytestmark = pytest.mark.unit

TID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("traceparent", f"00-{TID}-00f067aa0ba902b7-01")], TID),
        ([("x", "y"), ("traceparent", f"00-{TID}-00f067aa0ba902b7-00".encode())], TID),
        ([("traceparent", f"01-{TID}-00f067aa0ba902b7-01")], ""),  # unknown version
        ([("traceparent", f"00-{'0' * 32}-00f067aa0ba902b7-01")], ""),  # invalid trace id
        ([("traceparent", f"00-{TID}-{'0' * 16}-01")], ""),  # invalid parent id
        ([("traceparent", f"00-{TID.upper()}-00f067aa0ba902b7-01")], ""),  # must be lowercase
        ([("traceparent", "garbage")], ""),
        ([], ""),
        (None, ""),
    ],
)
def test_trace_id_from_metadata(metadata: object, expected: str) -> None:
    assert trace_id(metadata) == expected  # type: ignore[arg-type]
