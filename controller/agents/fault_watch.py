"""Follows one agent's fault state changes for a lease, over WatchFaults.

The runner learns from it, while the run is live, that a fault ended before
the run reverted it: its worker died, its target vanished, its lease expired,
someone halted the agent. A broken stream is reopened with include_existing,
so an end that happened while it was down is still seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
import structlog

from brownout.v1 import agent_pb2 as pb
from controller.agents.client import AgentClient

log = structlog.get_logger(__name__)

RETRY_S = 0.5


class FaultWatch:
    def __init__(
        self, client: AgentClient, lease_id: str, on_event: Callable[[str, pb.FaultEvent], None]
    ) -> None:
        self.client = client
        self.lease_id = lease_id
        self._on_event = on_event
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.RpcContext | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{lease_id}", daemon=True)

    def start(self) -> FaultWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            request = pb.WatchFaultsRequest(lease_id=self.lease_id, include_existing=True)
            stream = self.client.stub.WatchFaults(request)
            with self._lock:
                self._call = stream
                if self._stop.is_set():
                    stream.cancel()
            try:
                for event in stream:
                    self._on_event(self.client.address, event)
            except grpc.RpcError as exc:
                if self._stop.is_set() or exc.code() == grpc.StatusCode.CANCELLED:
                    return
                log.info(
                    "fault watch broken; reopening", agent=self.client.address, code=exc.code()
                )
            self._stop.wait(RETRY_S)
