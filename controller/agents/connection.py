"""How a controller reaches its agents, as one value: which agents, the
per-call timeout, and the TLS settings. A service builds its fleet from it,
and anything that needs a channel of its own (recovery, for an agent no longer
in the inventory) builds one the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from controller.agents.inventory import AgentRef
from controller.agents.tls import ClientTls


@dataclass(frozen=True)
class AgentConnection:
    refs: tuple[AgentRef, ...]
    timeout: float = 5.0
    tls: ClientTls | None = None

    @staticmethod
    def of(
        refs: Sequence[AgentRef], timeout: float = 5.0, tls: ClientTls | None = None
    ) -> AgentConnection:
        return AgentConnection(tuple(refs), timeout, tls)

    def to(self, refs: Sequence[AgentRef]) -> AgentConnection:
        """The same settings for other agents."""
        return replace(self, refs=tuple(refs))
