"""Which injectors this agent runs: one per fault kind."""

from __future__ import annotations

from agent import procs
from agent.faults.base import Injector, InjectorContext
from agent.faults.cpu import CpuInjector


def build_injectors(ctx: InjectorContext, spawner: procs.Spawner) -> dict[str, Injector]:
    injectors: list[Injector] = [CpuInjector(ctx, spawner)]
    return {inj.kind: inj for inj in injectors}
