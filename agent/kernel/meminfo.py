"""Host memory figures from /proc/meminfo, in bytes."""

from __future__ import annotations

from pathlib import Path


def parse(text: str) -> dict[str, int]:
    """'MemTotal:  24684092 kB' lines -> {'MemTotal': 25276510208, ...}"""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def read(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    return parse(path.read_text())


def rss_anon(pid: int) -> int | None:
    """Anonymous resident memory of a process, or None if it is gone (or a
    zombie, which holds no memory)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse(status).get("RssAnon")
