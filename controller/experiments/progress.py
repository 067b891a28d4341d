"""Where a run says what it is doing: the terminal, the service's event stream, or nowhere."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def event(self, message: str) -> None: ...


class Quiet:
    def event(self, message: str) -> None:
        pass
