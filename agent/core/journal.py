"""The fault journal: one JSON record per live fault, written atomically.

Each record is written to a temp file and renamed over the old one, so a
crash leaves either the old or the new record. Durable writes also fsync the
file and the directory: a fault whose effects outlive a reboot (files on
disk) must have its record outlive one too. Other faults skip the fsyncs: an
agent crash leaves the page cache (and the record) intact, and a machine
crash takes their qdiscs, rules and processes with it. Ending a fault only
unlinks its record: that needs no free space, so reverts go ahead on a full
filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

RECORD_VERSION = 1
_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "journal"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, fault_id: str) -> Path:
        if not fault_id or "/" in fault_id or fault_id.startswith("."):
            raise ValueError(f"unsafe fault id {fault_id!r}")
        return self.dir / (fault_id + _SUFFIX)

    def write(self, fault_id: str, record: dict[str, Any], durable: bool = True) -> None:
        """Atomically (re)write the record of one fault. Raises OSError (e.g. ENOSPC)."""
        path = self._path(fault_id)
        data = json.dumps({"version": RECORD_VERSION, **record}, sort_keys=True).encode()
        tmp = self.dir / f"{_TMP_PREFIX}{fault_id}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if durable:
            self._fsync_dir()

    def remove(self, fault_id: str, durable: bool = True) -> None:
        """Forget a fault. Idempotent; needs no free space."""
        with contextlib.suppress(FileNotFoundError):
            self._path(fault_id).unlink()
            if durable:
                self._fsync_dir()

    def load(self) -> dict[str, dict[str, Any]]:
        """Every readable record by fault id. Stray temp files are removed;
        unreadable records are moved aside (the marker sweep covers their faults)."""
        records: dict[str, dict[str, Any]] = {}
        for path in sorted(self.dir.iterdir()):
            if path.name.startswith(_TMP_PREFIX):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if not path.name.endswith(_SUFFIX):
                continue
            try:
                record = json.loads(path.read_bytes())
                if not isinstance(record, dict) or "kind" not in record:
                    raise ValueError("not a fault record")
            except (OSError, ValueError) as exc:
                aside = path.with_name(path.name + ".corrupt")
                log.error("journal record unreadable", path=str(path), error=str(exc))
                with contextlib.suppress(OSError):
                    path.rename(aside)
                continue
            records[path.name[: -len(_SUFFIX)]] = record
        return records

    def fault_ids(self) -> list[str]:
        return sorted(
            p.name[: -len(_SUFFIX)]
            for p in self.dir.iterdir()
            if p.name.endswith(_SUFFIX) and not p.name.startswith(_TMP_PREFIX)
        )

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
