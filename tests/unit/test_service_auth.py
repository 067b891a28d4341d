"""The service's token file: each mistake is named, a made token works once
hashed, and a token is never stored in the clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import ConfigError
from controller.service.auth import Role, Tokens, digest, new_token

pytestmark = pytest.mark.unit

SHA = digest("secret")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("tokens: {}", "tokens", "must be a list"),
        ("[1, 2]", "tokens", "must be a list"),
        ("tokens: [5]", "tokens[0]", "must be a mapping"),
        (f"tokens: [{{name: a, role: viewer, sha256: {SHA}, x: 1}}]", "tokens[0]", "unknown"),
        (f"tokens: [{{name: '', role: viewer, sha256: {SHA}}}]", "tokens[0].name", "non-empty"),
        (f"tokens: [{{name: a, role: admin, sha256: {SHA}}}]", "tokens[0].role", "viewer or"),
        ("tokens: [{name: a, role: viewer, sha256: abc}]", "tokens[0].sha256", "64 lowercase"),
        (
            f"tokens: [{{name: a, role: viewer, sha256: {SHA}}}, "
            f"{{name: a, role: operator, sha256: {SHA}}}]",
            "tokens[1].name",
            "twice",
        ),
        ("tokens: [", "", "not YAML"),
    ],
)
def test_bad_token_files_are_refused_naming_the_entry(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        Tokens.load(path)
    assert err.value.where == (f"{path}: {where}" if where else str(path))
    assert message in err.value.message


def test_a_made_token_is_stored_hashed_and_identifies_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    op = new_token(path, "alice", Role.OPERATOR)
    view = new_token(path, "grafana", Role.VIEWER)
    text = path.read_text()
    assert op not in text and view not in text and digest(op) in text
    assert path.stat().st_mode & 0o077 == 0
    tokens = Tokens.load(path)
    alice, grafana = tokens.caller(op), tokens.caller(view)
    assert alice is not None and (alice.name, alice.role) == ("alice", Role.OPERATOR)
    assert grafana is not None and grafana.role == Role.VIEWER
    assert tokens.caller(op + "x") is None and tokens.caller("") is None
    with pytest.raises(ConfigError, match="exists already"):
        new_token(path, "alice", Role.VIEWER)
