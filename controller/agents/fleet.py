"""Parallel dispatch to many agents, and one lease keeper per agent.

Every call goes through the generated gRPC client (AgentClient). A failure on
one agent is an Outcome with the status code, never an exception that stops
the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from brownout.v1 import agent_pb2 as pb
from controller.agents.client import AgentClient
from controller.agents.inventory import AgentRef
from controller.agents.lease_keeper import LeaseKeeper
from controller.agents.tls import ClientTls

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    address: str
    value: T | None = None
    error: str = ""
    code: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def unreachable(self) -> bool:
        return self.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


@dataclass
class AgentStatus:
    ref: AgentRef
    info: pb.AgentInfo | None
    error: str = ""

    @property
    def address(self) -> str:
        return self.ref.address

    @property
    def reachable(self) -> bool:
        return self.info is not None

    @property
    def labels(self) -> dict[str, str]:
        reported = dict(self.info.labels) if self.info is not None else {}
        return {**reported, **self.ref.labels}


def _describe(exc: grpc.RpcError) -> tuple[str, str]:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    return name, f"{name}: {exc.details()}"


class Fleet:
    def __init__(
        self,
        refs: Sequence[AgentRef],
        timeout: float = 5.0,
        workers: int = 256,
        tls: ClientTls | None = None,
    ) -> None:
        self.refs: dict[str, AgentRef] = {r.address: r for r in refs}
        self.timeout = timeout
        self._clients = {a: AgentClient(a, timeout=timeout, tls=tls) for a in self.refs}
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(self.refs))), thread_name_prefix="fleet"
        )
        self.keepers: dict[str, LeaseKeeper] = {}

    def client(self, address: str) -> AgentClient:
        return self._clients[address]

    def _call(self, address: str, fn: Callable[[AgentClient], T]) -> Outcome[T]:
        t0 = time.monotonic()
        try:
            value = fn(self._clients[address])
        except grpc.RpcError as exc:
            code, error = _describe(exc)
            return Outcome(address, None, error, code, time.monotonic() - t0)
        return Outcome(address, value, seconds=time.monotonic() - t0)

    def map(
        self, fn: Callable[[AgentClient], T], addresses: Iterable[str] | None = None
    ) -> dict[str, Outcome[T]]:
        """Call fn on each agent in parallel; results keyed by address, in input order."""
        targets = list(self.refs if addresses is None else addresses)
        futures = [self._pool.submit(self._call, a, fn) for a in targets]
        return {a: f.result() for a, f in zip(targets, futures, strict=True)}

    def statuses(self, addresses: Iterable[str] | None = None) -> dict[str, AgentStatus]:
        out = self.map(lambda c: c.info(), addresses)
        return {a: AgentStatus(self.refs[a], o.value, o.error) for a, o in out.items()}

    def halt(self, latch: bool = False, reason: str = "") -> dict[str, Outcome[pb.HaltResponse]]:
        return self.map(lambda c: c.halt(latch, reason))

    def acquire_leases(
        self, addresses: Iterable[str], holder: str, ttl: float
    ) -> dict[str, Outcome[pb.Lease]]:
        """One lease per agent, each kept alive at TTL/3 by its own keeper."""
        out = self.map(lambda c: c.acquire_lease(holder, ttl), addresses)
        for address, o in out.items():
            if o.value is not None:
                self.keepers[address] = LeaseKeeper(
                    self._clients[address], o.value.lease_id, ttl
                ).start()
        return out

    def lost(self) -> dict[str, str]:
        """Agents whose lease is gone: the agent has reverted their faults itself."""
        return {a: k.lost_reason for a, k in self.keepers.items() if k.lost.is_set()}

    def stop_keepers(self) -> None:
        # In parallel: each stop() may wait for a renewal in flight.
        list(self._pool.map(lambda k: k.stop(), list(self.keepers.values())))

    def lease_ids(self) -> Mapping[str, str]:
        return {a: k.lease_id for a, k in self.keepers.items()}

    def close(self) -> None:
        self.stop_keepers()
        self._pool.shutdown(wait=True)
        for c in self._clients.values():
            c.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
