"""Domain errors. The gRPC layer maps each to one status code."""

from __future__ import annotations

from agent.kernel.errors import Gone


class AgentError(Exception):
    """Base: the message is shown to the caller, so it says what to do."""


class InvalidArgument(AgentError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(AgentError):
    pass


class FailedPrecondition(AgentError):
    pass


class AlreadyExists(AgentError):
    pass


class ResourceExhausted(AgentError):
    pass


class ApplyError(AgentError):
    """The kernel refused a change; the partial change has been rolled back."""


class TargetGone(AgentError, Gone):
    """Revert found the fault's target (namespace, interface, process) gone, and
    with it whatever the fault had changed there: nothing is left to undo."""
