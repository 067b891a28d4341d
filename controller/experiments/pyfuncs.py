"""Chaos Toolkit `python` providers, tolerances and controls: a module's
function, found and checked against its arguments when the file is read,
called in a worker thread with its timeout when the run needs it.

As chaoslib does, a function that declares `configuration` or `secrets`
receives the experiment's configuration, and the secrets of the scopes its
provider names.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from brownout.errors import ConfigError
from controller.experiments import fields
from controller.experiments.model import PythonProvider

Func = Callable[..., Any]

# Which modules an experiment may name (prefixes; None: any). `brownout run`
# runs its own user's files and allows any; `brownout serve` takes experiments
# from the API, so it allows only the modules its operator listed
# (--python-module), and a module outside them is refused before it is imported.
_allowed: tuple[str, ...] | None = None


def allow(prefixes: tuple[str, ...] | None) -> None:
    global _allowed
    _allowed = prefixes


def check_allowed(module: str, where: str) -> None:
    if _allowed is None:
        return
    if not any(module == p or module.startswith(p + ".") for p in _allowed):
        listed = ", ".join(_allowed) or "none"
        raise ConfigError(
            where,
            f"python module {module!r} is not allowed here (allowed: {listed}); python"
            " providers and controls run code in the controller: brownout serve"
            " --python-module PREFIX allows a module",
        )


def module_name(text: str) -> str:
    """A dotted module name (for --python-module)."""
    if not text or not all(part.isidentifier() for part in text.split(".")):
        raise ValueError(f"{text!r} is not a module name, e.g. chaosk8s or mycompany.chaos")
    return text


class CallFailed(Exception):
    """The function raised, or did not return within its timeout."""


def find(module: str, func: str, where: str) -> Func:
    """The function, or a ConfigError naming the field that is wrong."""
    check_allowed(module, f"{where}.module")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{where}.module", f"cannot import {module!r} ({exc}); is its package installed?"
        ) from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        public = sorted(
            n
            for n, v in vars(mod).items()
            if inspect.isfunction(v) and v.__module__ == module and not n.startswith("_")
        )[:12]
        raise ConfigError(
            f"{where}.func",
            f"{module} has no function {func!r}"
            + (f"; it has {', '.join(public)}" if public else ""),
        )
    return fn  # type: ignore[no-any-return]


def check_arguments(fn: Func, arguments: Mapping[str, Any], where: str, *extra: str) -> None:
    """The arguments bind to the function's signature (as chaoslib's validation)."""
    sig = inspect.signature(fn)
    values: dict[str, Any] = dict(arguments)
    for name in ("configuration", "secrets", *extra):
        if name in sig.parameters:
            values.setdefault(name, None)
    try:
        sig.bind(**values)
    except TypeError as exc:
        raise ConfigError(
            f"{where}.arguments", f"{getattr(fn, '__qualname__', fn)}{sig}: {exc}"
        ) from None


def provider(p: PythonProvider, where: str, extra: tuple[str, ...] = ()) -> None:
    check_arguments(find(p.module, p.func, where), p.arguments, where, *extra)


def run(p: PythonProvider, extra: Mapping[str, Any] | None = None) -> Any:
    """Call a provider's function as chaoslib does: secrets substituted into
    the arguments now, `secrets=` the merged scopes the provider names,
    `configuration=` the experiment's."""
    fn = find(p.module, p.func, p.qualname)
    flat = fields.flat(p.all_secrets)
    kwargs: dict[str, Any] = fields.substitute(dict(p.arguments), {**flat, **p.configuration})
    kwargs.update(extra or {})
    params = inspect.signature(fn).parameters
    if p.secrets and "secrets" in params:
        kwargs["secrets"] = {k: v for s in p.secrets for k, v in p.all_secrets.get(s, {}).items()}
    if "configuration" in params:
        kwargs["configuration"] = dict(p.configuration)
    return call(fn, kwargs, p.timeout, p.qualname)


def call(fn: Func, kwargs: Mapping[str, Any], timeout: float, name: str) -> Any:
    """fn(**kwargs) on a worker thread. A function past its timeout is left to
    finish on its daemon thread (Python cannot stop one); the activity fails."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn(**kwargs)
        except BaseException as exc:  # reported as the activity's failure
            box["error"] = exc

    t = threading.Thread(target=work, name=f"python:{name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise CallFailed(f"{name} did not return within {timeout:g}s")
    if "error" in box:
        exc = box["error"]
        raise CallFailed(f"{name}: {type(exc).__name__}: {exc}")
    return box.get("value")
