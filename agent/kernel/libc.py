"""The C library, loaded once, for the calls Python's standard library lacks
(setns, unshare, fallocate's flags, prctl, mallopt)."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> int:
    """Raise OSError with errno if a libc call returned -1 (or another failure < 0)."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result
