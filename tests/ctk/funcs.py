"""Python providers for the Chaos Toolkit corpus: each call is written to the
file CTK_TRACE names (one JSON line), so a test can see what ran, in which
order and with which arguments, under `chaos run` and `brownout run` alike."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any


def trace(event: str, **data: Any) -> None:
    path = os.environ.get("CTK_TRACE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"event": event, **data}, default=str) + "\n")


def add(a: int, b: int) -> int:
    trace("add", a=a, b=b)
    return a + b


def fetch(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The service's JSON answer, as a dict."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        doc: dict[str, Any] = json.load(resp)
    trace("fetch", url=url)
    return doc


def set_mode(url: str, mode: str) -> str:
    """Tell the test service how to answer (ok, slow or broken)."""
    with urllib.request.urlopen(f"{url}/mode/{mode}", timeout=5) as resp:
        answer: str = resp.read().decode()
    trace("set_mode", mode=mode)
    return answer


def wait(seconds: float, label: str = "") -> str:
    trace("wait-start", label=label)
    time.sleep(seconds)
    trace("wait-end", label=label)
    return label


def fail(message: str) -> None:
    trace("fail", message=message)
    raise RuntimeError(message)


def whoami(
    configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Which configuration and secret values reached the function (a test checks
    that the secret arrived, and that no journal holds it)."""
    conf = configuration or {}
    token = (secrets or {}).get("token", "")
    trace("whoami", service=conf.get("service_url"), token_len=len(token))
    service = str(conf.get("service_url", ""))
    return {
        "service_ok": service == os.environ.get("SERVICE_URL"),
        "token_ok": token == os.environ.get("CTK_TOKEN"),
    }


def at_least(value: Any = None, minimum: int = 1) -> bool:
    """A probe tolerance: is the value (a number, or a count of items) at least minimum?"""
    n = value if isinstance(value, int | float) else len((value or {}).get("items", []))
    trace("at_least", value=n, minimum=minimum)
    return bool(n >= minimum)
