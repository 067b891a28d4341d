"""Errors the controller reports to a person, naming where the problem is.
The class lives in the shared package, which parses fault arguments too."""

from __future__ import annotations

from brownout.errors import ConfigError

__all__ = ["ConfigError"]
