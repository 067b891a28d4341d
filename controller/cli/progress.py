"""Live progress in the terminal: one timestamped line per step, fault, probe and revert."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Console:
    """Lines to stderr, so stdout stays free for --json output and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def event(self, message: str) -> None:
        with self._lock:
            self._stream.write(f"{time.strftime('%H:%M:%S')}  {message}\n")
            self._stream.flush()
