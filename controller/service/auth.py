"""Bearer tokens and their roles, as on the agent: a viewer reads, an operator
also changes things (starts and aborts runs, stores experiments, the kill
switch).

The tokens file (`--tokens`, YAML) lists each token by name and role, with its
SHA-256 rather than the token itself:

    tokens:
      - {name: alice, role: operator, sha256: 9f86d0...}
      - {name: grafana, role: viewer, sha256: 2c26b4...}

`brownout token --name alice --role operator --file tokens.yaml` makes one,
prints it once and appends its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from controller.errors import ConfigError


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    via: str = "token"  # or "cert": a client certificate's identity

    @property
    def identity(self) -> str:
        return f"{self.via}:{self.name}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Entry:
    name: str
    role: Role
    sha256: str


class Tokens:
    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @staticmethod
    def load(path: Path) -> Tokens:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not YAML: {exc}") from None
        raw = doc.get("tokens") if isinstance(doc, dict) else None
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: tokens", "must be a list of {name, role, sha256}")
        entries, names = [], set()
        for i, item in enumerate(raw):
            entries.append(_entry(item, f"{path}: tokens[{i}]"))
            if entries[-1].name in names:
                raise ConfigError(f"{path}: tokens[{i}].name", f"{entries[-1].name!r} twice")
            names.add(entries[-1].name)
        return Tokens(entries)

    def caller(self, token: str) -> Caller | None:
        """The caller a token belongs to; compared in constant time."""
        got = digest(token)
        found = None
        for e in self._entries:
            if hmac.compare_digest(got, e.sha256):
                found = Caller(e.name, e.role)
        return found


def _entry(item: Any, where: str) -> _Entry:
    if not isinstance(item, dict):
        raise ConfigError(where, "must be a mapping {name, role, sha256}")
    unknown = set(item) - {"name", "role", "sha256"}
    if unknown:
        raise ConfigError(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    name, role, sha = item.get("name"), item.get("role"), item.get("sha256")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name", "must be a non-empty string")
    if role not in {r.value for r in Role}:
        raise ConfigError(f"{where}.role", f"must be viewer or operator, got {role!r}")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ConfigError(f"{where}.sha256", "must be the 64 lowercase hex digits of SHA-256")
    return _Entry(name, Role(role), sha)


def new_token(path: Path, name: str, role: Role) -> str:
    """Make a token, append its hash to the tokens file, return it (shown once)."""
    doc: dict[str, Any] = {"tokens": []}
    if path.exists():
        Tokens.load(path)  # refuse to append to a broken file
        doc = yaml.safe_load(path.read_text()) or {"tokens": []}
    if any(t.get("name") == name for t in doc["tokens"]):
        raise ConfigError(f"{path}: tokens", f"a token named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    doc["tokens"].append({"name": name, "role": str(role), "sha256": digest(token)})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return token
