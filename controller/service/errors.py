"""The service's domain errors, in one place, and the one table that gives
each its HTTP status. The operations raise these; the API's exception
handler and the console's message page both read the table, so a refusal
reads the same however it was asked for."""

from __future__ import annotations

from controller.service.auth import Caller


class ServiceError(Exception):
    """A request the service will not do; `field` names the input at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(ServiceError):
    """The input is wrong: a field, a query value, a document."""


class NotFound(ServiceError):
    """No such experiment or run."""


class Refused(ServiceError):
    """The request is valid, but not now (a run that is already ending)."""


class WindowClosed(Refused):
    """The experiment's run window is closed (and it was not overridden)."""


class KillSwitchEngaged(Refused):
    """The kill switch is engaged: no new runs until it is disengaged."""


class TooLarge(ServiceError):
    """A request body over the limit."""


class Unauthenticated(ServiceError):
    """No token, or one this controller does not know."""


class Forbidden(ServiceError):
    """The caller's role does not allow this."""

    def __init__(self, message: str, caller: Caller | None = None) -> None:
        super().__init__(message)
        self.caller = caller  # who was refused, when known: the audit line names them


# Most specific first: the first class an error is an instance of decides.
STATUS: tuple[tuple[type[ServiceError], int], ...] = (
    (Invalid, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Refused, 409),
    (TooLarge, 413),
)


def status_of(exc: ServiceError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)
