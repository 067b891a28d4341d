"""Lease renewal by datagram (brownout/heartbeat.py): one UDP socket, one thread.

AcquireLease, on the authenticated gRPC channel, hands the holder a key (one
per caller identity and holder name) and this port. A datagram renews only
leases bound to its key, only under a valid MAC and a counter above the last
one accepted for that key; anything else is dropped and counted in
brownout_lease_datagrams_total{result}. The answer (MAC'd with the same key)
gives each lease's state and fault generation, and the agent's generation. Nothing
but renewal is ever done for a datagram, and nothing is logged per datagram:
at fleet scale that would drown the log (the gRPC acquire is audited).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from agent.core.errors import NotFound
from agent.core.manager import FaultManager
from agent.core.metrics import Metrics
from brownout import heartbeat as hb

log = structlog.get_logger(__name__)

# Keys no lease uses any more are forgotten after this long.
KEY_IDLE = 3600.0


@dataclass
class HolderKey:
    key_id: bytes
    key: bytes
    identity: str
    holder: str
    leases: set[str] = field(default_factory=set)
    counter: int = 0  # the highest accepted
    used: float = field(default_factory=time.monotonic)


class HeartbeatKeys:
    """Keys by id, and by (caller identity, holder) so a holder keeps one key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[bytes, HolderKey] = {}
        self._by_holder: dict[tuple[str, str], HolderKey] = {}

    def bind(self, identity: str, holder: str, lease_id: str) -> HolderKey:
        with self._lock:
            k = self._by_holder.get((identity, holder))
            if k is None:
                key_id, key = hb.new_key()
                k = HolderKey(key_id, key, identity, holder)
                self._by_id[key_id] = k
                self._by_holder[(identity, holder)] = k
            k.leases.add(lease_id)
            k.used = time.monotonic()
            return k

    def get(self, key_id: bytes) -> HolderKey | None:
        with self._lock:
            return self._by_id.get(key_id)

    def accept(self, k: HolderKey, counter: int) -> str:
        """'' if counter is above the last accepted (and now is), else why not."""
        with self._lock:
            if counter == k.counter:
                return "replayed"
            if counter < k.counter:
                return "stale"
            k.counter = counter
            k.used = time.monotonic()
            return ""

    def forget_idle(self, live: Callable[[str], bool]) -> None:
        """Drop lease ids that are gone, and keys with none left for KEY_IDLE."""
        now = time.monotonic()
        with self._lock:
            for k in list(self._by_id.values()):
                k.leases = {x for x in k.leases if live(x)}
                if not k.leases and now - k.used > KEY_IDLE:
                    del self._by_id[k.key_id]
                    self._by_holder.pop((k.identity, k.holder), None)


class DatagramServer:
    def __init__(self, manager: FaultManager, metrics: Metrics, keys: HeartbeatKeys) -> None:
        self.manager = manager
        self.metrics = metrics
        self.keys = keys
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.port = 0

    def start(self, host: str, port: int) -> DatagramServer:
        """Bind host:port (0: any free port) and serve on a thread of its own."""
        info = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(info[0], socket.SOCK_DGRAM)
        hb.widen_receive_buffer(sock)  # many controllers' heartbeats may land at once
        sock.bind(info[4])
        sock.settimeout(0.5)  # to notice stop()
        self._sock, self.port = sock, sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="lease-datagrams", daemon=True)
        self._thread.start()
        log.info("lease datagrams", listen=f"{host}:{self.port}")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None and self._thread is not None:
            # Wake the thread's recvfrom now, not at its next timeout: an empty
            # datagram to itself (dropped as malformed if it ever counted).
            with (
                contextlib.suppress(OSError),
                socket.socket(self._sock.family, socket.SOCK_DGRAM) as s,
            ):
                s.sendto(b"", self._sock.getsockname()[:2])
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _count(self, result: str) -> None:
        self.metrics.lease_datagrams_total.labels(result).inc()

    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if self._stop.is_set():
                return
            try:
                answer = self.handle(data)
            except Exception:  # one bad datagram must never stop renewals
                log.exception("lease datagram failed")
                self._count("error")
                continue
            if answer is not None:
                try:
                    sock.sendto(answer, peer)
                except OSError:
                    self._count("unanswered")
            if time.monotonic() - last_sweep > 60:
                last_sweep = time.monotonic()
                self.keys.forget_idle(self.manager.leases.is_live)

    def handle(self, data: bytes) -> bytes | None:
        """The answer to one datagram, or None (dropped: counted by why)."""
        try:
            k = self.keys.get(hb.request_key_id(data))
        except hb.Malformed:
            self._count("malformed")
            return None
        if k is None:
            self._count("unknown_key")
            return None
        try:
            req = hb.decode_request(data, k.key)
        except hb.Malformed:
            self._count("malformed")
            return None
        except hb.Forged:
            self._count("forged")
            return None
        why = self.keys.accept(k, req.counter)
        if why:
            self._count(why)
            return None
        states = []
        for lease_id in req.leases:
            if lease_id not in k.leases:  # another holder's lease: never renewed here
                states.append(hb.LeaseState(lease_id, False, 0.0))
                continue
            try:
                # The lease keeps the gRPC peer that acquired it: network faults
                # exclude that address (invariant 6), the datagrams' source too
                # when, as usual, it is the same host.
                lease = self.manager.renew_lease(lease_id)
            except NotFound:
                states.append(hb.LeaseState(lease_id, False, 0.0))
                continue
            left = max(0.0, lease.deadline - time.monotonic())
            states.append(hb.LeaseState(lease_id, True, left, lease.generation))
        self._count("renewed")
        return hb.encode_answer(k.key_id, k.key, req.counter, self.manager.generation, states)
