"""The lease keeper for `chaos run`: declare it once, under `controls:`.

Before the method it selects the agents and acquires one lease on each,
heartbeated for the experiment's lifetime on the session's own thread. After
the rollbacks, and again after the experiment (Chaos Toolkit skips rollbacks
on an interrupt, by design) and at cleanup, it reverts this run's faults and
releases the leases. If `chaos` is killed, the heartbeats stop and each agent
reverts by itself within the lease's TTL.
"""

from __future__ import annotations

import logging
from typing import Any

from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Configuration, Secrets

from brownout.errors import ConfigError
from chaosbrownout import session

logger = logging.getLogger("chaostoolkit")

__all__ = [
    "after_experiment_control",
    "after_rollback_control",
    "before_method_control",
    "cleanup_control",
]


def before_method_control(
    context: Any, configuration: Configuration = None, secrets: Secrets = None, **kwargs: Any
) -> None:
    try:
        leases = session.current(configuration).hold()
    except (ConfigError, session.BrownoutError) as exc:
        # Nothing is injected without its lease: stop the run here.
        raise InterruptExecution(f"brownout: {exc}") from None
    logger.info(f"brownout: leases held on {len(leases)} agent(s)")


def _end(why: str) -> None:
    reverted = session.end()
    if reverted:
        count = sum(len(v) for v in reverted.values())
        logger.info(f"brownout: {why}: {count} fault(s) reverted, leases released")


def after_rollback_control(context: Any, state: Any = None, **kwargs: Any) -> None:
    _end("after the rollbacks")


def after_experiment_control(context: Any, state: Any = None, **kwargs: Any) -> None:
    _end("after the experiment")


def cleanup_control() -> None:
    _end("at cleanup")
