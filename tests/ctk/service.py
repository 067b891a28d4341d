"""The HTTP service both tools probe: JSON on /health, told how to answer by
/mode/ok, /mode/slow (0.3 s late) or /mode/broken (500)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.controller_servers import serving


class Modes:
    def __init__(self) -> None:
        self.mode = "ok"

    def respond(self, path: str) -> tuple[int, str, str]:
        if path.startswith("/mode/"):
            self.mode = path.removeprefix("/mode/")
            return 200, self.mode, "text/plain"
        if path == "/text":
            return (500 if self.mode == "broken" else 200), f"status: {self.mode}\n", "text/plain"
        if path == "/health":
            if self.mode == "slow":
                time.sleep(0.3)
            if self.mode == "broken":
                return 500, json.dumps({"status": "broken", "items": []}), "application/json"
            doc = {"status": self.mode, "version": 3, "items": [{"ok": True}] * 3}
            return 200, json.dumps(doc), "application/json"
        return 404, "not found", "text/plain"


@contextmanager
def service() -> Iterator[tuple[str, Modes]]:
    modes = Modes()
    with serving(modes.respond) as server:
        yield server.url, modes
