"""The option table of a fault kind, and reading a mapping against it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from brownout.errors import ConfigError
from brownout.v1 import agent_pb2 as pb

Values = Mapping[str, Any]


@dataclass(frozen=True)
class Option:
    """One named value of a fault kind: the mapping key `name`, the flag `--name`
    (underscores as dashes)."""

    name: str
    parse: Callable[[str], Any] | None = None  # None: a switch, true or false
    help: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()  # the value is one of these names
    repeat: bool = False  # a list (the flag may be repeated)
    group: str = ""  # options of one group exclude each other
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def switch(self) -> bool:
        return self.parse is None and not self.choices

    def absent(self) -> Any:
        """The value when not given."""
        if self.switch:
            return False
        if self.repeat:
            return []
        return self.default


@dataclass(frozen=True)
class Kind:
    name: str
    help: str
    options: tuple[Option, ...]
    build: Callable[[Values], tuple[pb.FaultSpec, pb.Target]]
    required_groups: frozenset[str] = field(default_factory=frozenset)

    def option(self, name: str) -> Option | None:
        key = name.replace("-", "_")
        return next((o for o in self.options if o.name == key), None)

    def group(self, group: str) -> list[Option]:
        return [o for o in self.options if o.group == group]


def _scalar(option: Option, value: object, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(where, f"expected a value like {option.metavar or 'a string or number'},"
                                 f" got {value!r}")  # fmt: skip
    text = str(value)
    if option.choices:
        if text not in option.choices:
            raise ConfigError(where, f"must be one of {', '.join(option.choices)}, got {text!r}")
        return text
    assert option.parse is not None
    try:
        return option.parse(text)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def _value(option: Option, value: object, where: str) -> Any:
    if option.switch:
        if not isinstance(value, bool):
            raise ConfigError(where, f"must be true or false, got {value!r}")
        return value
    if option.repeat:
        items = value if isinstance(value, list) else [value]
        return [_scalar(option, v, f"{where}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, list):  # `core-list: [0, 2]` is the flag's `0,2`
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConfigError(f"{where}[{i}]", f"expected a value, got {v!r}")
        value = ",".join(str(v) for v in value)
    return _scalar(option, value, where)


def from_mapping(kind: Kind, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Every option of kind, parsed from raw (keys with dashes or underscores);
    a null value counts as not given. Errors name `where.KEY`."""
    given: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in raw.items():
        option = kind.option(str(key))
        if option is None:
            known = ", ".join(o.name.replace("_", "-") for o in kind.options)
            raise ConfigError(f"{where}.{key}", f"unknown argument for {kind.name} ({known})")
        if option.name in seen:
            raise ConfigError(f"{where}.{key}", "given twice (once with dashes, once with _)")
        seen.add(option.name)
        if value is not None:
            given[option.name] = _value(option, value, f"{where}.{key}")
    for group in sorted({o.group for o in kind.options if o.group}):
        chosen = [o.name for o in kind.group(group) if o.name in given]
        names = [o.name.replace("_", "-") for o in kind.group(group)]
        listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        if len(chosen) > 1:
            raise ConfigError(where, f"give only one of {listed}")
        if not chosen and group in kind.required_groups:
            raise ConfigError(where, f"one of {listed} is required")
    for option in kind.options:
        if option.required and option.name not in given:
            raise ConfigError(f"{where}.{option.name.replace('_', '-')}", "is required")
    return {o.name: given.get(o.name, o.absent()) for o in kind.options}
