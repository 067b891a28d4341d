"""A UDP relay on loopback standing in for a firewall on the datagram path:
shut, it swallows what it is sent; open, it relays each datagram to the agent
and the agent's answer back to whoever sent it."""

from __future__ import annotations

import selectors
import socket
import threading


class UdpGate:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.open = False
        self.relayed = 0
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.bind(("127.0.0.1", 0))
        self._sender: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-gate", daemon=True)

    @property
    def port(self) -> int:
        return int(self._front.getsockname()[1])

    def __enter__(self) -> UdpGate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._front.close()
        self._back.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._front, selectors.EVENT_READ)
            sel.register(self._back, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data, peer = sock.recvfrom(2048)
                    if not self.open:
                        continue  # dropped, as a firewall would
                    if sock is self._front:
                        self._sender = peer
                        self._back.sendto(data, self.upstream)
                    elif self._sender is not None:
                        self._front.sendto(data, self._sender)
                    self.relayed += 1
