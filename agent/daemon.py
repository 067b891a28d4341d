"""Wiring of the agent: recovery first, then the gRPC and metrics servers.

`serve` blocks until SIGTERM/SIGINT, then reverts every fault and exits 0.
`sweep` does the recovery alone, for systemd's ExecStopPost and operators.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from agent import sdnotify
from agent.api.audit import denied_auditor
from agent.api.authz import Allowlist, AuthzInterceptor
from agent.api.convert import ProtoCodec
from agent.api.datagrams import DatagramServer, HeartbeatKeys
from agent.api.server import AgentServicer
from agent.api.tls import (
    TlsConfigError,
    check_plaintext_allowed,
    listen_host,
    server_tls,
)
from agent.config import SAME_PORT, AgentConfig
from agent.core.clock import SystemClock
from agent.core.injector import InjectorContext, Markers
from agent.core.journal import Journal
from agent.core.manager import FaultManager
from agent.core.metrics import Metrics
from agent.core.model import EndReason
from agent.faults.registry import build_injectors
from agent.faults.targetwatch import TargetWatcher
from agent.kernel import libc, procs
from agent.kernel.sysinfo import boot_id
from brownout.addresses import is_loopback, parse_hostport
from brownout.v1 import agent_pb2, agent_pb2_grpc
from brownout.version import __version__

log = structlog.get_logger("agent")

STOP_WAIT_S = 5.0
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name


class StateDirBusy(RuntimeError):
    pass


class ListenError(OSError):
    """A listener could not be opened (the address is taken or not ours)."""


@dataclass
class Runtime:
    manager: FaultManager
    metrics: Metrics
    spawner: procs.Spawner
    lock_file: IO[str]
    watcher: TargetWatcher


def instance_marker(state_dir: Path) -> str:
    """Short stable id of this agent's state dir, carried by everything it creates."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]


def _lock_state_dir(state_dir: Path) -> IO[str]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    f = (state_dir / "agent.lock").open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise StateDirBusy(
            f"another brownout-agent holds {state_dir}; stop it first (or use Halt over gRPC)"
        ) from None
    return f


def build_runtime(cfg: AgentConfig) -> Runtime:
    lock_file = _lock_state_dir(cfg.state_dir)
    metrics = Metrics()
    instance = instance_marker(cfg.state_dir)
    spawner = procs.Spawner(instance)
    watcher = TargetWatcher()
    ctx = InjectorContext(
        limits=cfg.limits,
        markers=Markers(instance=instance, state_dir=cfg.state_dir),
        agent_pid=os.getpid(),
        listen=cfg.listen,
    )
    manager = FaultManager(
        build_injectors(ctx, spawner),
        Journal(cfg.state_dir),
        SystemClock(),
        cfg.limits,
        metrics,
        ProtoCodec(),
        boot_id=boot_id(),
        targets=watcher,
    )
    spawner.on_exit = lambda exit: manager.worker_died(exit.tag, exit.describe())
    watcher.on_gone = manager.target_gone
    return Runtime(manager, metrics, spawner, lock_file, watcher)


def _limit_malloc_arenas() -> None:
    # A footprint tuning: without it the agent still serves, only larger.
    try:
        libc.limit_malloc_arenas(2)
    except OSError as exc:
        log.warning("cannot cap malloc arenas", error=str(exc))


def _protect_self(oom_score_adj: int) -> None:
    try:
        procs.set_oom_score_adj(os.getpid(), oom_score_adj)
    except OSError as exc:
        log.warning("cannot lower own oom_score_adj", value=oom_score_adj, error=str(exc))


def sweep(cfg: AgentConfig) -> dict[str, object]:
    rt = build_runtime(cfg)
    rt.manager.start()
    recovered = rt.manager.recover(EndReason.SWEEP)
    for item in procs.sweep_zygotes(instance_marker(cfg.state_dir)):
        log.warning("swept leftover", item=item)
    rt.manager.shutdown()
    rt.spawner.shutdown()
    rt.watcher.close()
    return {
        "reverted": [{"fault_id": f.id, "kind": f.kind, "state": str(f.state)} for f in recovered],
        "remaining_journal": rt.manager.journal_ids(),
    }


def _security(cfg: AgentConfig) -> tuple[grpc.ServerCredentials | None, Allowlist | None]:
    """Server credentials and the role allowlist, or plaintext (None, None) on loopback."""
    tls = server_tls(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
    if tls is None:
        check_plaintext_allowed(cfg.listen, cfg.insecure_allow_remote)
        if not is_loopback(listen_host(cfg.listen)):
            log.warning(
                "serving plaintext gRPC on a non-loopback address (--insecure-allow-remote):"
                " anyone who can reach it can inject faults",
                listen=cfg.listen,
            )
        return None, None
    if not cfg.operators and not cfg.viewers:
        raise TlsConfigError(
            "TLS is on but no client may call: give --operators and/or --viewers"
            " (certificate SANs or CNs)"
        )
    return tls.credentials(), Allowlist(cfg.operators, cfg.viewers)


def _start_datagrams(
    datagrams: DatagramServer, cfg: AgentConfig, grpc_port: int, server: grpc.Server
) -> int:
    """The lease-datagram port, or 0 when off. `same` falls back to any free
    port if the gRPC port's number is taken for UDP; a given port must bind."""
    if cfg.heartbeat_port is None:
        return 0
    host = listen_host(cfg.listen)
    want = grpc_port if cfg.heartbeat_port == SAME_PORT else cfg.heartbeat_port
    try:
        return datagrams.start(host, want).port
    except OSError as exc:
        if cfg.heartbeat_port != SAME_PORT:
            server.stop(grace=0)
            raise ListenError(
                f"cannot take UDP port {want} for lease datagrams (--heartbeat-port):"
                f" {exc.strerror}"
            ) from exc
        log.warning("UDP port taken; lease datagrams on any free port", port=want)
        return datagrams.start(host, 0).port


def serve(cfg: AgentConfig) -> int:
    started_at = time.time()
    # Before the first thread starts, so no thread has an arena of its own yet.
    _limit_malloc_arenas()
    # Refuse a bad security setup before touching anything.
    credentials, allowlist = _security(cfg)
    _protect_self(cfg.oom_score_adj)
    rt = build_runtime(cfg)
    manager = rt.manager
    manager.start()
    recovered = manager.recover(EndReason.AGENT_RESTART)
    if recovered:
        log.warning("reverted faults left by a previous agent", count=len(recovered))
    rt.spawner.start()  # the worker fork server, so the first inject does not wait for it

    interceptors: list[grpc.ServerInterceptor] = []
    if allowlist is not None:
        interceptors.append(AuthzInterceptor(allowlist, denied_auditor(rt.metrics)))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[("grpc.so_reuseport", 0)],
    )
    datagrams = DatagramServer(manager, rt.metrics, HeartbeatKeys())
    servicer = AgentServicer(manager, rt.metrics, cfg.labels, boot_id(), started_at, datagrams)
    agent_pb2_grpc.add_AgentServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(cfg.listen)
    else:
        port = server.add_secure_port(cfg.listen, credentials)
    if port == 0:
        raise ListenError(f"cannot listen on {cfg.listen} (--listen): address in use or not local")
    server.start()
    heartbeat_port = _start_datagrams(datagrams, cfg, port, server)

    metrics_port = 0
    if cfg.metrics_listen:
        where = parse_hostport(cfg.metrics_listen, allow_any_port=True)
        try:
            httpd, _thread = start_http_server(
                where.port, addr=where.host, registry=rt.metrics.registry
            )
        except OSError as exc:
            server.stop(grace=0)
            raise ListenError(
                f"cannot serve metrics on {cfg.metrics_listen} (--metrics-listen): {exc.strerror}"
            ) from exc
        metrics_port = httpd.server_port

    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "agent serving",
        version=__version__,
        listen=cfg.listen,
        port=port,
        tls=credentials is not None,
        metrics_port=metrics_port,
        state_dir=str(cfg.state_dir),
    )
    if cfg.ready_file is not None:
        tmp = cfg.ready_file.with_suffix(".tmp")
        ready = {"port": port, "metrics_port": metrics_port, "heartbeat_port": heartbeat_port}
        tmp.write_text(json.dumps({**ready, "pid": os.getpid()}))
        tmp.replace(cfg.ready_file)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.set())
    sdnotify.notify(f"READY=1\nSTATUS=serving on port {port}")
    sdnotify.start_watchdog(manager.healthy, stop)
    # Wake now and then: a signal delivered to another thread only sets a flag,
    # and the handler runs when the main thread next runs Python code.
    while not stop.wait(0.5):
        pass

    log.info("shutting down: reverting every fault")
    sdnotify.notify("STOPPING=1\nSTATUS=reverting every fault")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    datagrams.stop()
    reverted = manager.shutdown(EndReason.AGENT_SHUTDOWN)
    # Bounded: grpcio's sync server never reports itself stopped after a
    # client stream sent a message it could not deserialize (seen with
    # KeepLeases under the fuzzer), and everything is reverted by now.
    if not server.stop(grace=2).wait(timeout=STOP_WAIT_S):
        log.warning("gRPC server did not report stopped; exiting anyway", waited_s=STOP_WAIT_S)
    rt.spawner.shutdown()
    rt.watcher.close()
    left = manager.journal_ids()
    log.info("agent stopped", reverted=len(reverted), journal_left=left)
    return 0 if not left else 1
