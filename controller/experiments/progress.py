"""Where a run says what it is doing: the terminal, the service's event stream, or nowhere."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol


class Reporter(Protocol):
    def event(self, message: str) -> None: ...


class Quiet:
    def event(self, message: str) -> None:
        pass


# One line per agent for fan-outs up to this size; past it, one line of counts
# (10,000 lines of "active" say less than one). An agent whose fault failed
# is always named, on its own line, as a problem.
PER_AGENT_LINES = 50
NAMED = 10  # addresses named in a line about many agents


def agent_list(agents: Sequence[str]) -> str:
    """Addresses for one line: all of a few, the first NAMED of many."""
    if not agents:
        return "-"
    if len(agents) <= NAMED:
        return ", ".join(agents)
    return f"{', '.join(agents[:NAMED])} and {len(agents) - NAMED} more"


def counts(what: Iterable[str]) -> str:
    """'9998 active, 2 failed': how many of each, most first."""
    return ", ".join(f"{n} {w}" for w, n in Counter(what).most_common())
