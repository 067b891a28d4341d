"""Chaos Toolkit controls in `brownout run`: each declared module's
`configure_control`, then `before_/after_` + experiment, hypothesis, method,
rollback and activity + `_control`, then `cleanup_control`, in chaoslib's
order, with the arguments its signature asks for.

As in chaoslib, a control that raises is logged and the run goes on, except
when it raises chaoslib's InterruptExecution (matched by name, so the
controller does not need chaoslib): the run is interrupted, its faults
reverted.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import structlog

from controller.experiments.model import Control, Experiment

log = structlog.get_logger("brownout.controls")


class Interrupted(Exception):
    """A control asked to stop the run (chaoslib's InterruptExecution)."""


class Controls:
    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.top = experiment.controls
        self.calls: list[str] = []  # "name:function", for the journal

    def __bool__(self) -> bool:
        return bool(self.top) or any(a.controls for a in self._activities())

    def _activities(self) -> list[Any]:
        h = self.experiment.hypothesis
        return [*(h.probes if h else ()), *self.experiment.method, *self.experiment.rollbacks]

    def _for(self, level: str, own: Sequence[Control]) -> list[Control]:
        """chaoslib's merge: the experiment's automatic controls, then (for a
        hypothesis or an activity) its own, a same-named one replacing the top one."""
        if level == "experiment":  # the experiment's own controls: all of them
            return list(self.top)
        if level in ("method", "rollback"):
            return [c for c in self.top if c.automatic]
        names = {c.name for c in own}
        return [*(c for c in self.top if c.automatic and c.name not in names), *own]

    def _call(self, control: Control, function: str, **given: Any) -> None:
        fn = getattr(importlib.import_module(control.module), function, None)
        if fn is None:
            return
        params = inspect.signature(fn).parameters
        available = {
            "configuration": dict(self.experiment.configuration),
            "secrets": deepcopy(dict(self.experiment.secrets)),
            "experiment": dict(self.experiment.raw),
            "extensions": self.experiment.raw.get("extensions"),
            "settings": {},
            **given,
        }
        # chaoslib calls cleanup_control() bare, every other function with
        # the control's arguments.
        kwargs = {} if function == "cleanup_control" else deepcopy(dict(control.arguments))
        kwargs.update({k: v for k, v in available.items() if k in params or k == "context"})
        if "context" not in params:
            kwargs.pop("context", None)
        self.calls.append(f"{control.name}:{function}")
        try:
            fn(**kwargs)
        except Exception as exc:
            if type(exc).__name__ == "InterruptExecution":
                raise Interrupted(f"control {control.name} interrupted the run: {exc}") from None
            log.warning("control failed", control=control.name, function=function,
                        error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def _declared(self) -> list[Control]:
        """Every control in the file, once per name (chaoslib's get_controls)."""
        seen: dict[str, Control] = {}
        for c in (*self.top, *(c for a in self._activities() for c in a.controls)):
            seen.setdefault(c.name, c)
        return list(seen.values())

    def configure(self) -> None:
        for c in self._declared():
            self._call(c, "configure_control")

    def cleanup(self) -> None:
        for c in self._declared():
            self._call(c, "cleanup_control")

    def before(self, level: str, context: Mapping[str, Any], own: Sequence[Control] = ()) -> None:
        for c in self._for(level, own):
            if c.scope in (None, "before"):
                self._call(c, f"before_{level}_control", context=dict(context))

    def after(
        self, level: str, context: Mapping[str, Any], state: Any, own: Sequence[Control] = ()
    ) -> None:
        for c in self._for(level, own):
            if c.scope in (None, "after"):
                self._call(c, f"after_{level}_control", context=dict(context), state=state)
