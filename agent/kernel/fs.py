"""Filesystem layer for disk faults: mounts, usage, fill files. The only code that
creates or deletes Brownout's files on a filesystem.

Every file lives in `<mount>/.brownout/` and is named
`<fault id>.<agent instance>.<kind>`, so a sweep finds exactly this agent's
files, on any mount, even with no journal left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.kernel import mountinfo
from agent.kernel.libc import libc

DIR_NAME = ".brownout"
# Filesystems a sweep looks at: local ones only (a dead network mount could hang it).
LOCAL_FSTYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "vfat", "exfat", "bcachefs", "zfs"}
    | {"overlay"}
)
# Kernel interfaces, not storage: no fault ever writes files there.
PSEUDO_FSTYPES = frozenset(
    {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs"}
    | {"bpf", "pstore", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "nsfs"}
)
_WRITE_CHUNK = 1024 * 1024

# Serialises creating and removing .brownout directories between faults.
_dir_lock = threading.Lock()


@dataclass(frozen=True)
class Usage:
    """statvfs in bytes. `avail` is what unprivileged writers may still use."""

    total: int
    free: int
    avail: int
    block: int

    @property
    def used(self) -> int:
        return self.total - self.free

    @property
    def used_percent(self) -> float:
        """As df reports it: used / (used + available)."""
        denominator = self.used + self.avail
        return 100.0 * self.used / denominator if denominator else 100.0


def usage(path: Path) -> Usage:
    st = os.statvfs(path)
    return Usage(
        st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize, st.f_frsize
    )


def mount_of(path: Path) -> mountinfo.MountEntry:
    """The mount holding `path` (absolute and already resolved)."""
    return mountinfo.containing(mountinfo.read(), path)


def unwritable_reason(entry: mountinfo.MountEntry) -> str | None:
    """Why no file can be written on this mount, or None."""
    if entry.fstype in PSEUDO_FSTYPES:
        return f"{entry.mount_point} is a {entry.fstype} filesystem, not storage"
    if entry.read_only:
        return f"{entry.mount_point} is mounted read-only"
    return None


def same_filesystem(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def file_name(fault_id: str, instance: str, kind: str) -> str:
    return f"{fault_id}.{instance}.{kind}"


def brownout_dir(mount: Path) -> Path:
    return mount / DIR_NAME


def create(path: Path, direct: bool = False) -> int:
    """Create a new file (never an existing one) in its .brownout dir; return its fd."""
    with _dir_lock:
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(path, flags | (os.O_DIRECT if direct else 0), 0o600)


def create_empty(path: Path) -> None:
    """Create path (and its .brownout dir) as an empty file, as create() does."""
    os.close(create(path))


def direct_io_missing() -> str:
    """Why block IO with O_DIRECT and page-cache drops is not possible here ('' if it is)."""
    if not hasattr(os, "posix_fadvise") or not hasattr(os, "O_DIRECT"):
        return "posix_fadvise or O_DIRECT unavailable on this platform"
    return ""


def remove(paths: list[Path]) -> list[Path]:
    """Unlink files (needs no free space) and their .brownout dirs once empty.
    Idempotent; returns the files that were there."""
    removed = []
    with _dir_lock:
        for path in paths:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        for parent in {p.parent for p in paths}:
            with contextlib.suppress(FileNotFoundError, OSError):
                parent.rmdir()  # fails harmlessly while other faults' files are in it
    return removed


_fallocate64 = libc.fallocate64
_fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd: int, offset: int, length: int) -> None:
    """Linux fallocate(2), mode 0. Unlike posix_fallocate it never silently falls
    back to writing: EOPNOTSUPP means this filesystem cannot."""
    if length <= 0:
        return
    if _fallocate64(fd, 0, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def write_fill(fd: int, offset: int, length: int) -> None:
    """Write `length` bytes of incompressible data from `offset`, then sync."""
    block = bytearray(os.urandom(_WRITE_CHUNK))
    written = 0
    while written < length:
        # A counter in each chunk keeps deduplicating filesystems honest.
        block[:8] = (offset + written).to_bytes(8, "little")
        n = os.pwrite(
            fd, memoryview(block)[: min(_WRITE_CHUNK, length - written)], offset + written
        )
        written += n
    os.fdatasync(fd)


def grow(fd: int, offset: int, length: int) -> str:
    """Allocate `length` more bytes at `offset`: fallocate, else writes. Returns the method."""
    try:
        fallocate(fd, offset, length)
        return "fallocate"
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    write_fill(fd, offset, length)
    return "write"


def marked_files(instance: str) -> list[tuple[Path, str]]:
    """(path, kind) of this agent's files in .brownout dirs on local, writable mounts."""
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for entry in mountinfo.read():
        if entry.fstype not in LOCAL_FSTYPES or entry.read_only:
            continue
        d = brownout_dir(entry.mount_point)
        if d in seen:
            continue
        seen.add(d)
        with contextlib.suppress(OSError):
            for p in d.iterdir():
                parts = p.name.split(".")
                if len(parts) == 3 and parts[1] == instance:
                    found.append((p, parts[2]))
    return found


class FillFile:
    """A new fill file, grown to size: written only by the disk fill fault."""

    def __init__(self, path: Path) -> None:
        self.fd = create(path)

    def grow(self, offset: int, length: int) -> str:
        return grow(self.fd, offset, length)

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def __enter__(self) -> FillFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)


def real_dir(text: str) -> Path:
    """An absolute path to an existing directory, symlinks resolved; ValueError saying why not."""
    if "\0" in text or not os.path.isabs(text):
        raise ValueError(f"must be an absolute path, got {text!r}")
    try:
        resolved = Path(os.path.realpath(text))
    except OSError as exc:  # e.g. a /proc link the agent may not follow
        raise ValueError(f"cannot resolve {text}: {exc.strerror}") from None
    # os.path, not pathlib: any OSError (e.g. a name too long) means "no such directory".
    if not os.path.exists(resolved):
        raise ValueError(f"{text} does not exist")
    if not os.path.isdir(resolved):
        raise ValueError(f"{text} (resolved: {resolved}) is not a directory")
    return resolved


def device_of(path: Path) -> int:
    """The device (filesystem) holding path."""
    return os.stat(path).st_dev
