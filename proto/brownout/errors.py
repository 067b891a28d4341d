"""Errors reported to a person, naming where the problem is: shared by the
controller and the Chaos Toolkit extension, which read the same files."""

from __future__ import annotations


class ConfigError(ValueError):
    """An experiment, inventory or option is invalid; `where` names the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message
