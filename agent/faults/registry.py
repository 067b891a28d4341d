"""Which injectors this agent runs: one per fault kind."""

from __future__ import annotations

from agent import procs
from agent.faults.bandwidth import BandwidthInjector
from agent.faults.base import Injector, InjectorContext
from agent.faults.cpu import CpuInjector
from agent.faults.disk import DiskInjector
from agent.faults.io import IoInjector
from agent.faults.memory import MemoryInjector
from agent.faults.netem import NetemInjector
from agent.faults.partition import PartitionInjector
from agent.faults.shaping import Registry as ShapingRegistry


def build_injectors(ctx: InjectorContext, spawner: procs.Spawner) -> dict[str, Injector]:
    shaping = ShapingRegistry()  # one holder per interface across netem and bandwidth
    injectors: list[Injector] = [
        CpuInjector(ctx, spawner),
        MemoryInjector(ctx, spawner),
        DiskInjector(ctx),
        IoInjector(ctx, spawner),
        NetemInjector(ctx, shaping),
        BandwidthInjector(ctx, shaping),
        PartitionInjector(ctx),
    ]
    return {inj.kind: inj for inj in injectors}
