"""The retry rule of idempotent agent calls: a transient error (the agent not
reached, or late) is tried again a bounded number of times, spaced by the
wait; any other error, and the last transient one, reach the caller."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from controller.agents.aioclient import retrying

pytestmark = pytest.mark.unit


class Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._code.name


def calls(*results: grpc.StatusCode | str) -> tuple[list[float], Callable[[], Awaitable[str]]]:
    """A call that fails with each code in turn, then returns the string; the
    moments it was made."""
    made: list[float] = []
    queue = list(results)

    async def call() -> str:
        made.append(time.monotonic())
        result = queue.pop(0)
        if isinstance(result, grpc.StatusCode):
            raise Failed(result)
        return result

    return made, call


def test_a_call_that_succeeds_is_made_once() -> None:
    made, call = calls("ok")
    assert asyncio.run(retrying(call, wait=0.0)) == "ok"
    assert len(made) == 1


def test_transient_errors_are_tried_again_after_the_wait() -> None:
    made, call = calls(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, "ok")
    assert asyncio.run(retrying(call, attempts=3, wait=0.05)) == "ok"
    assert len(made) == 3
    assert all(later - earlier >= 0.045 for earlier, later in itertools.pairwise(made))


def test_the_last_transient_error_reaches_the_caller_after_every_attempt() -> None:
    made, call = calls(*[grpc.StatusCode.UNAVAILABLE] * 4)
    with pytest.raises(Failed) as err:
        asyncio.run(retrying(call, attempts=3, wait=0.0))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(made) == 3


@pytest.mark.parametrize("first", [True, False])
def test_a_permanent_error_is_not_tried_again(first: bool) -> None:
    codes = [] if first else [grpc.StatusCode.UNAVAILABLE]
    made, call = calls(*codes, grpc.StatusCode.NOT_FOUND, "ok")
    with pytest.raises(Failed) as err:
        asyncio.run(retrying(call, attempts=3, wait=0.0))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(made) == len(codes) + 1


def test_one_attempt_means_no_retry() -> None:
    made, call = calls(grpc.StatusCode.UNAVAILABLE, "ok")
    with pytest.raises(Failed):
        asyncio.run(retrying(call, attempts=1, wait=0.0))
    assert len(made) == 1
