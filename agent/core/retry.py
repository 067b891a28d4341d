"""Failed reverts are retried with exponential backoff until they succeed or
the agent stops: a fault that could not be reverted is never forgotten."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
import tenacity

log = structlog.get_logger(__name__)


class RevertRetries:
    def __init__(self, closed: threading.Event) -> None:
        self._closed = closed
        self._lock = threading.Lock()
        self._retrying: set[str] = set()

    def start(self, fault_id: str, attempt: Callable[[], None]) -> None:
        """Call attempt() (which raises to go again) until it returns, on its
        own thread; a fault already being retried is left to that thread."""
        with self._lock:
            if fault_id in self._retrying:
                return
            self._retrying.add(fault_id)

        def run() -> None:
            try:
                tenacity.Retrying(
                    wait=tenacity.wait_exponential(multiplier=0.25, max=30),
                    stop=lambda _state: self._closed.is_set(),
                    sleep=self._sleep,
                    reraise=True,
                )(attempt)
            except Exception:
                log.error("giving up revert retries at shutdown", fault_id=fault_id)
            finally:
                with self._lock:
                    self._retrying.discard(fault_id)

        threading.Thread(target=run, name=f"retry-{fault_id}", daemon=True).start()

    def _sleep(self, seconds: float) -> None:
        self._closed.wait(seconds)
