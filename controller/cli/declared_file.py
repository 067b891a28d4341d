"""Schedules and monkeys declared in a file that `brownout serve` loads at
start (--schedules, --monkeys), for GitOps: the file is their source of
truth, so what it no longer lists is removed from the store, and a name the
API (or another file) owns already is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import yaml

from controller.errors import ConfigError
from controller.monkey import model as monkeys
from controller.schedules import model as schedules
from controller.store import StoredSchedule


class Declared(Protocol):
    def get(self, name: str) -> StoredSchedule | None: ...
    def put(self, name: str, doc: dict[str, Any], source: str, by: str) -> None: ...
    def all(self) -> list[StoredSchedule]: ...
    def delete(self, name: str) -> bool: ...


def _read(path: Path, key: str) -> list[Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get(key), list):
        raise ConfigError(str(path), f"expected a mapping with {key}: [...]")
    return list(raw[key])


def _unique(path: Path, docs: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    names = [d["name"] for d in docs]
    if len(set(names)) != len(names):
        raise ConfigError(str(path), f"a {what} name appears twice")
    return docs


def read_schedules(path: Path) -> list[dict[str, Any]]:
    """The schedules of a file, checked; experiment files named in them are
    made absolute (relative to the file)."""
    docs = []
    for i, doc in enumerate(_read(path, "schedules")):
        where = f"{path}: schedules[{i}]"
        if isinstance(doc, dict) and isinstance(doc.get("experiments"), list | str):
            names = (
                doc["experiments"] if isinstance(doc["experiments"], list) else [doc["experiments"]]
            )
            doc = {**doc, "experiments": [_beside(path, n) for n in names]}
        schedules.parse(doc, where)
        docs.append(doc)
    return _unique(path, docs, "schedule")


def read_monkeys(path: Path) -> list[dict[str, Any]]:
    docs = []
    for i, doc in enumerate(_read(path, "monkeys")):
        monkeys.parse(doc, f"{path}: monkeys[{i}]")
        docs.append(doc)
    return _unique(path, docs, "monkey")


def _beside(path: Path, ref: object) -> object:
    if isinstance(ref, str) and ref.endswith((".yaml", ".yml", ".json")):
        return str((path.parent / ref).resolve())
    return ref


def load(store: Declared, path: Path, docs: list[dict[str, Any]], what: str) -> None:
    """Make the store's schedules (or monkeys) of this file what the file says."""
    source = str(path.resolve())
    for doc in docs:
        existing = store.get(doc["name"])
        if existing is not None and existing.source != source:
            raise ConfigError(
                str(path), f"{what} {doc['name']!r} already exists from {existing.source}"
            )
        store.put(doc["name"], doc, source, "file")
    for stored in store.all():
        if stored.source == source and stored.name not in {d["name"] for d in docs}:
            store.delete(stored.name)
