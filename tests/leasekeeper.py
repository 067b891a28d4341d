"""Keeps one lease alive: renews at TTL/3, retrying transient errors.

If the agent answers NOT_FOUND the lease is gone and so are its faults; the
keeper records that and stops. If the controller dies, renewals stop and the
agent's dead-man's switch reverts the faults by itself.
"""

from __future__ import annotations

import threading

import grpc
import structlog
import tenacity

from controller.agents.aioclient import transient
from tests.agentclient import AgentClient

log = structlog.get_logger(__name__)


class LeaseKeeper:
    def __init__(self, client: AgentClient, lease_id: str, ttl: float) -> None:
        self.client = client
        self.lease_id = lease_id
        self.ttl = ttl
        self.lost = threading.Event()
        self.lost_reason = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease_id}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.ttl)

    def _renew(self) -> None:
        period = self.ttl / 3
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            wait=tenacity.wait_exponential(multiplier=period / 8, max=period / 2),
            stop=tenacity.stop_after_delay(self.ttl),
            reraise=True,
        ):
            with attempt:
                self.client.renew_lease(self.lease_id, timeout=period)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._renew()
            except grpc.RpcError as exc:
                self.lost_reason = f"{exc.code().name}: {exc.details()}"
                log.warning("lease lost", lease_id=self.lease_id, reason=self.lost_reason)
                self.lost.set()
                return
