"""Sampling processes from tests without racing their exit.

A worker the agent has just killed may vanish between two looks at it
(`pid_exists` then `Process(pid).status()`), and that is exactly when the
agent did its job. Every test that asks "is it still there?" or sums a
figure over a process tree goes through these helpers, which count a
process that exits mid-sample (or is a zombie) as gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psutil


def running(pid: int) -> bool:
    """True while pid is a live process: False once it is gone or a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def any_running(pids: Iterable[int]) -> bool:
    return any(running(p) for p in pids)


def all_gone(pids: Iterable[int]) -> bool:
    return not any_running(pids)


def tree(pid: int) -> list[psutil.Process]:
    """pid and its descendants that are alive at the moment of asking."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_sum(pid: int, figure: Callable[[psutil.Process], float]) -> float:
    """figure() summed over pid's tree, leaving out members that exit mid-sample."""
    total = 0.0
    for p in tree(pid):
        try:
            total += figure(p)
        except psutil.NoSuchProcess:
            continue
    return total


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)
