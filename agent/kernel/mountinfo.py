"""Parsing of /proc/self/mountinfo, shared by the cgroup and filesystem layers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    device: str  # major:minor
    root: str  # the path inside the filesystem mounted here ("/" unless a bind mount)
    mount_point: Path
    options: frozenset[str]  # per-mount options: rw, ro, nosuid, ...
    fstype: str
    source: str
    super_options: frozenset[str]  # per-superblock options: for cgroup v1, the controllers

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_line(line: str) -> MountEntry:
    """One mountinfo line: `id parent maj:min root point opts [optional...] - type src sopts`."""
    left, sep, right = line.rstrip("\n").partition(" - ")
    head = left.split(" ")
    tail = right.split(" ")
    if not sep or len(head) < 6 or len(tail) < 3:
        raise ValueError(f"malformed mountinfo line: {line!r}")
    return MountEntry(
        mount_id=int(head[0]),
        device=head[2],
        root=_unescape(head[3]),
        mount_point=Path(_unescape(head[4])),
        options=frozenset(head[5].split(",")),
        fstype=tail[0],
        source=_unescape(tail[1]),
        super_options=frozenset(tail[2].split(",")),
    )


def parse(text: str) -> list[MountEntry]:
    return [parse_line(line) for line in text.splitlines() if line.strip()]


def read(path: Path = Path("/proc/self/mountinfo")) -> list[MountEntry]:
    return parse(path.read_text())


def containing(entries: list[MountEntry], path: Path) -> MountEntry:
    """The mount that holds `path` (absolute, symlinks already resolved).

    The longest mount point that is a prefix wins; among equal mount points
    the last one listed is on top (it shadows the earlier ones).
    """
    best: MountEntry | None = None
    for entry in entries:
        point = entry.mount_point
        if (path == point or point in path.parents) and (
            best is None or len(point.parts) >= len(best.mount_point.parts)
        ):
            best = entry
    if best is None:
        raise ValueError(f"no mount holds {path}")
    return best
