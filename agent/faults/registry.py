"""Which injectors this agent runs: one per fault kind."""

from __future__ import annotations

from typing import Any

from agent.core.injector import Injector, InjectorContext
from agent.faults.clock import ClockInjector
from agent.faults.network.bandwidth import BandwidthInjector
from agent.faults.network.dns import DnsInjector
from agent.faults.network.netem import NetemInjector
from agent.faults.network.partition import PartitionInjector
from agent.faults.network.shaping import Registry as ShapingRegistry
from agent.faults.process.injector import ProcessInjector
from agent.faults.process.pause import PauseInjector
from agent.faults.resource.cpu import CpuInjector
from agent.faults.resource.disk import DiskInjector
from agent.faults.resource.io import IoInjector
from agent.faults.resource.memory import MemoryInjector
from agent.kernel import procs


def build_injectors(ctx: InjectorContext, spawner: procs.Spawner) -> dict[str, Injector[Any]]:
    shaping = ShapingRegistry()  # one holder per interface across netem and bandwidth
    injectors: list[Injector[Any]] = [
        CpuInjector(ctx, spawner),
        MemoryInjector(ctx, spawner),
        DiskInjector(ctx),
        IoInjector(ctx, spawner),
        NetemInjector(ctx, shaping),
        BandwidthInjector(ctx, shaping),
        PartitionInjector(ctx),
        ProcessInjector(ctx),
        PauseInjector(ctx),
        DnsInjector(ctx, spawner),
        ClockInjector(ctx),
    ]
    return {inj.kind: inj for inj in injectors}
