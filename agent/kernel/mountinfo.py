"""Parsing of /proc/self/mountinfo, shared by the cgroup and filesystem layers.

The agent's own mount table is parsed again only when the kernel says it
changed: an open mountinfo file polls POLLPRI after a mount or unmount in its
namespace (proc(5)). Every worker's start reads the cgroup mounts, and a
Kubernetes node can have hundreds of mounts.
"""

from __future__ import annotations

import os
import re
import select
import threading
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


SELF = Path("/proc/self/mountinfo")


class _OwnTable:
    """This process's mount table, parsed once per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = -1
        self._poll = select.poll()
        self._entries: list[MountEntry] | None = None

    def read(self) -> list[MountEntry]:
        with self._lock:
            if self._fd < 0:
                self._fd = os.open(SELF, os.O_RDONLY | os.O_CLOEXEC)
                self._poll.register(self._fd, select.POLLPRI)
            # Polling consumes the change it reports, so it comes before the
            # read: a mount during the read is reported by the next poll.
            changed = bool(self._poll.poll(0))
            if changed or self._entries is None:
                os.lseek(self._fd, 0, os.SEEK_SET)
                chunks = []
                while chunk := os.read(self._fd, 1 << 16):
                    chunks.append(chunk)
                self._entries = parse(b"".join(chunks).decode())
            return list(self._entries)


_OWN = _OwnTable()


def read(path: Path = SELF) -> list[MountEntry]:
    return _OWN.read() if path == SELF else parse(path.read_text())


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
