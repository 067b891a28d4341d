"""The W3C trace context a caller sends in gRPC metadata (`traceparent`),
read so the agent's logs and audit lines for the call carry the caller's
trace id. Only read: the agent makes no spans of its own."""

from __future__ import annotations

import re
from collections.abc import Iterable

# version "00": 2 hex, trace id 32 hex (not all zero), parent id 16 hex, flags 2 hex
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def trace_id(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The trace id of a well-formed traceparent in metadata, or ''."""
    for key, value in metadata or ():
        if key != "traceparent":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        m = _TRACEPARENT.match(text.strip())
        if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
            return m.group(1)
    return ""
