"""`brownout serve` as an ASGI app on uvicorn: the API (and the console), the
startup that recovers cut-off runs and re-latches an engaged kill switch, and
the shutdown that interrupts live runs and waits for their reverts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from brownout.addresses import is_loopback, parse_hostport
from controller.errors import ConfigError
from controller.service import api, console
from controller.service.errors import ServiceError
from controller.service.http import error_response
from controller.service.state import Service

log = structlog.get_logger("brownout.serve")

# How long a shutdown waits for live runs to revert before it gives up on them
# (their agents then revert by lease, as after a crash).
DRAIN_S = 60.0


def app(svc: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        svc.runs.interrupt_all("controller shutdown")
        # Off the loop: the drain may take a minute of reverts.
        await asyncio.to_thread(svc.runs.wait_all, DRAIN_S)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"error": exc.detail, "status": exc.status_code},
            status_code=exc.status_code,
            headers=exc.headers,  # a 405 keeps Starlette's Allow header
        )

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return error_response(exc)

    return Starlette(
        routes=[*api.routes(svc), *console.routes(svc)],
        exception_handlers={HTTPException: http_error, ServiceError: service_error},
        lifespan=lifespan,
    )


def prepare(svc: Service) -> list[str]:
    """Before serving: this replica on the store, the runs cut off by the last
    process (or by a replica gone meanwhile), and the kill switch."""
    svc.sync.start()
    interrupted = svc.sync.take_over()
    svc.lever.reassert()
    return interrupted


def bind(listen: str, tls: bool) -> socket.socket:
    """The listening socket (so port 0 is known before serving), with the
    agent's rule: plaintext only on loopback."""
    where = parse_hostport(listen, allow_any_port=True)
    if not tls and not is_loopback(where.host):
        raise ConfigError(
            "--listen",
            f"refusing to serve the API in plaintext on {listen}: bearer tokens would cross the"
            " network in the clear. Give --tls-server-cert and --tls-server-key, or listen on"
            " a loopback address",
        )
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((where.host.strip("[]"), where.port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--listen", f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def server(svc: Service, sock: socket.socket, ssl: dict[str, Any]) -> uvicorn.Server:
    config = uvicorn.Config(
        app(svc),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        **ssl,
    )
    return uvicorn.Server(config)


def serve(svc: Service, sock: socket.socket, ssl: dict[str, Any]) -> None:
    """Serve on the fleet's loop until SIGINT/SIGTERM, then drain.

    One loop carries the HTTP side and every agent call, lease and watch (and
    every run, as a task): a request never hops to another loop or a run
    thread. uvicorn runs on the loop's thread, so the signals are ours, on
    the main thread: the first asks for a graceful stop, a second SIGINT
    forces it (uvicorn's own rule), and the service ends with its own cleanup
    and exit code."""
    seen: list[int] = []
    http = server(svc, sock, ssl)

    def on_signal(signum: int, _frame: object) -> None:
        seen.append(signum)
        if http.should_exit and signum == signal.SIGINT:
            http.force_exit = True
        http.should_exit = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        svc.fleet.loop.run(http.serve(sockets=[sock]))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    log.info("stopped", signals=[signal.Signals(n).name for n in seen])
