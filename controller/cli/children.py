"""Child processes of the demos (`make run`, `make console`) that end with
them: each gets SIGTERM from the kernel when its parent dies, however it dies
(a SIGKILL included), so no agent or server is left holding its port.

PR_SET_PDEATHSIG fires when the thread that forked the child exits, so start
these children from the main thread only."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork


def dies_with_me() -> Callable[[], None]:
    """A preexec_fn for subprocess.Popen."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start tied children from the main thread (PR_SET_PDEATHSIG)")
    parent = os.getpid()

    def tie() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return tie
