"""A KeepLeases stream driven by hand from a test, with the sync client."""

from __future__ import annotations

import queue
from collections.abc import Iterator

from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient


class Stream:
    """A KeepLeases stream driven by hand: send() one heartbeat, read its answer."""

    def __init__(self, client: AgentClient) -> None:
        self._out: queue.Queue[pb.LeaseHeartbeat | None] = queue.Queue()
        self.call = client.stub.KeepLeases(self._requests(), timeout=60)
        self._seq = 0

    def _requests(self) -> Iterator[pb.LeaseHeartbeat]:
        while (hb := self._out.get()) is not None:
            yield hb

    def send(self, *lease_ids: str) -> pb.LeaseStates:
        self._seq += 1
        self._out.put(pb.LeaseHeartbeat(lease_ids=lease_ids, seq=self._seq))
        reply = next(self.call)
        assert reply.seq == self._seq
        return reply

    def close(self) -> None:
        self._out.put(None)

    def cancel(self) -> None:
        self.call.cancel()
