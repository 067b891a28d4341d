"""Follows one agent's fault state changes for a lease over WatchFaults, as a
task on the fleet's event loop (the asyncio twin of fault_watch, which serves
the single-agent CLI). A broken stream is reopened with include_existing, so
an end that happened while it was down is still seen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc
import structlog

from brownout.v1 import agent_pb2 as pb
from controller.agents.aioclient import AsyncAgentClient

log = structlog.get_logger(__name__)

RETRY_S = 0.5


class AsyncFaultWatch:
    def __init__(
        self,
        client: AsyncAgentClient,
        lease_id: str,
        on_event: Callable[[str, pb.FaultEvent], None],
    ) -> None:
        self.client = client
        self.lease_id = lease_id
        self._on_event = on_event
        self._task: asyncio.Task[None] | None = None

    def start(self) -> AsyncFaultWatch:
        """On the event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            call = self.client.watch(self.lease_id, include_existing=True)
            try:
                async for event in call:
                    self._on_event(self.client.address, event)
            except grpc.RpcError as exc:
                log.info(
                    "fault watch broken; reopening", agent=self.client.address, code=exc.code()
                )
            finally:
                call.cancel()
            await asyncio.sleep(RETRY_S)
