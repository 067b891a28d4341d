"""What a connection to an agent costs the controller, to decide whether its
channels should close while leases are held (they are renewed by datagram, so
a held lease needs no connection). One real agent over plaintext and one over
mutual TLS, both on loopback; the controller's client (AsyncAgentClient, the
fleet's channel options and TLS) makes one GetInfo call on each of N channels
of its own: on a connected channel (warm), and as a channel's first call
(cold: TCP, HTTP/2 and, with TLS, the handshake). Figures: CPU per call on
each side and the ratio cold / warm. Every fan-out at the end of a hold
(revert, the kill switch's Halt) would pay the cold price on every agent
whose channel had closed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.agents.aioclient import AsyncAgentClient
from controller.agents.tls import ClientTls
from controller.cli import certs
from tests.agentproc import AgentProc
from tests.bench.common import report
from tests.fleetsim.driver import cpu_s, tree_cpu_s
from tests.pki import Pki

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]
N = 600
CONCURRENCY = 64  # as a fleet fan-out's slots


async def _calls(address: str, tls: ClientTls | None, warm: bool, pid: int) -> dict[str, float]:
    credentials = tls.credentials() if tls is not None else None
    # A subchannel pool per channel: else gRPC shares one connection among
    # channels to the same address, and no call would be a first one.
    options = [*(tls.options() if tls else []), ("grpc.use_local_subchannel_pool", 1)]
    clients = [AsyncAgentClient(address, 10.0, credentials, options) for _ in range(N)]
    try:
        if warm:
            await asyncio.gather(*(c.info() for c in clients))
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(c: AsyncAgentClient) -> None:
            async with slots:
                await c.info()

        agent0, own0, t0 = tree_cpu_s(pid), cpu_s(), asyncio.get_running_loop().time()
        await asyncio.gather(*(one(c) for c in clients))
        wall = asyncio.get_running_loop().time() - t0
        own, agent = cpu_s() - own0, tree_cpu_s(pid) - agent0
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {
        "controller_us_per_call": round(1e6 * own / N),
        "agent_us_per_call": round(1e6 * agent / N),
        "wall_s": round(wall, 3),
    }


@pytest.fixture
def agents(tmp_path: Path, agent_factory: list[AgentProc]) -> Iterator[dict[str, Any]]:
    pki = Pki(tmp_path)
    plain = AgentProc(tmp_path / "plain").start()
    agent_factory.append(plain)
    secure = AgentProc(
        tmp_path / "tls", [*pki.agent_args(), "--operators", certs.CONTROLLER_IDENTITY]
    ).start()
    agent_factory.append(secure)
    tls = pki.client("controller", uris=[certs.CONTROLLER_IDENTITY])
    yield {"plaintext": (plain, None), "mutual TLS": (secure, tls)}


def test_a_first_call_costs_more_than_a_call_on_a_connected_channel(
    agents: dict[str, Any],
) -> None:
    figures: dict[str, Any] = {"channels": N, "concurrency": CONCURRENCY}
    for name, (agent, tls) in agents.items():
        row: dict[str, Any] = {
            mode: asyncio.run(_calls(agent.address, tls, mode == "warm", agent.pid))
            for mode in ("warm", "cold")
        }
        row["cold_over_warm_controller"] = round(
            row["cold"]["controller_us_per_call"] / row["warm"]["controller_us_per_call"], 2
        )
        figures[name] = row
    report("channel_reuse", figures)
    # The handshake is what a closed channel costs at the next fan-out.
    tls_row = figures["mutual TLS"]
    assert tls_row["cold"]["controller_us_per_call"] > tls_row["warm"]["controller_us_per_call"]
    assert tls_row["cold_over_warm_controller"] > figures["plaintext"]["cold_over_warm_controller"]
