"""Closing agents' channels when idle, for a fleet with more agents than
descriptors (descriptors.py): each connection then lives only while there
is work on it, and the next call opens another.

Not gRPC's own idle timeout (grpc.client_idle_timeout_ms): in grpcio 1.85
a channel that left IDLE once never went idle again, so every connection
stayed open after its second call (tests/host/test_fleet_descriptors.py
asserts the closing, on the second call and after). Here each client counts
its calls and streams in flight, and a task closes the channels that have
had none for `after` seconds."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from controller.agents.loop import cancel

if TYPE_CHECKING:
    from controller.agents.aioclient import AsyncAgentClient


class IdleChannels:
    def __init__(self, after: float) -> None:
        self.after = after
        self.open: set[AsyncAgentClient] = set()  # clients with a channel now
        self.closed = 0  # channels closed for idleness
        self._task: asyncio.Task[None] | None = None

    def opened(self, client: AsyncAgentClient) -> None:
        """The client made a channel (on the loop)."""
        self.open.add(client)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="idle-channels")

    async def _run(self) -> None:
        while self.open:
            await asyncio.sleep(self.after / 2)
            now = time.monotonic()
            idle = [c for c in self.open if not c.busy and now - c.used >= self.after]
            channels = []
            for c in idle:  # taken away at once: a call from now on opens another
                self.open.discard(c)
                channel = c.detach()
                if channel is not None:
                    channels.append(channel)
            self.closed += len(channels)
            await asyncio.gather(*(ch.close(grace=None) for ch in channels))

    async def stop(self) -> None:
        await cancel(self._task)
