"""Chaos Toolkit probes: the faults live on the configured agents, and what
each agent says of itself."""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import InvalidActivity
from chaoslib.types import Configuration, Secrets
from google.protobuf import json_format

from brownout.errors import ConfigError
from chaosbrownout import session

__all__ = ["active_faults", "agent_info"]


def _session(configuration: Configuration) -> session.Session:
    try:
        return session.current(configuration)
    except ConfigError as exc:
        raise InvalidActivity(str(exc)) from None


def active_faults(
    configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, list[dict[str, Any]]]:
    """Each configured agent's live faults (pending, active or reverting),
    whoever injected them."""
    return _session(configuration).live()


def agent_info(
    configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, dict[str, Any]]:
    """Each configured agent's GetInfo: version, features, labels, limits,
    whether it is halted; or why it could not be reached."""
    statuses = _session(configuration).fleet.statuses()
    return {
        a: json_format.MessageToDict(st.info, preserving_proto_field_name=True)
        if st.info is not None
        else {"error": st.error}
        for a, st in statuses.items()
    }
