"""A Chaos Toolkit control that writes each hook it receives to CTK_TRACE, with
the context's name, so a test compares the order under both tools."""

from __future__ import annotations

from typing import Any

from tests.ctk.funcs import trace


def _name(context: Any) -> str:
    if isinstance(context, dict):
        return str(context.get("name") or context.get("title") or "")
    return ""


def configure_control(label: str = "") -> None:
    trace("control", hook="configure", label=label)


def cleanup_control() -> None:
    trace("control", hook="cleanup")


def _hook(hook: str) -> Any:
    def f(context: Any, state: Any = None, **kwargs: Any) -> None:
        trace("control", hook=hook, context=_name(context))

    f.__name__ = hook
    return f


before_experiment_control = _hook("before_experiment")
after_experiment_control = _hook("after_experiment")
before_hypothesis_control = _hook("before_hypothesis")
after_hypothesis_control = _hook("after_hypothesis")
before_method_control = _hook("before_method")
after_method_control = _hook("after_method")
before_rollback_control = _hook("before_rollback")
after_rollback_control = _hook("after_rollback")
before_activity_control = _hook("before_activity")
after_activity_control = _hook("after_activity")
