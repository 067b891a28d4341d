"""DNS name patterns, as a DNS fault names them: an exact name
(db.example.com) or a suffix (*.example.com: the names under example.com,
not example.com itself). Shared by the CLI's checks and the agent."""

from __future__ import annotations

import re

LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
MAX_NAME = 253


def normalize(name: str) -> str:
    """Lower case, without the root's trailing dot."""
    return name.strip().rstrip(".").lower()


def parse_pattern(text: str) -> str:
    """The pattern, normalized; ValueError saying what is wrong otherwise."""
    name = normalize(text)
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if not labels or labels == [""]:
        raise ValueError(f"{text!r} is not a name: give db.example.com or *.example.com")
    if len(".".join(labels)) > MAX_NAME:
        raise ValueError(f"{text!r} is longer than {MAX_NAME} characters")
    for label in labels:
        if not LABEL.match(label):
            raise ValueError(
                f"{text!r}: {label!r} is not a DNS label (letters, digits, '-', '_',"
                " 1-63 long; '*' only as the whole first label)"
            )
    return name
