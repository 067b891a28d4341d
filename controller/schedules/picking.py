"""Which experiment a schedule runs next, and the schedule's cap on it.

A schedule of several experiments rotates: one never run by this schedule
goes first, then the least recently run; an exploration share of the picks
is random instead (drawn per occurrence, so the plan can show it). Each pick
says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from controller.experiments.model import Experiment, RampStep


def pick(
    experiments: tuple[str, ...],
    last_started: Mapping[str, str],
    exploration: float = 0.0,
    draws: tuple[float, float] = (1.0, 0.0),
) -> tuple[str, str]:
    """(experiment, why) given when each last started (ISO times) under this
    schedule; exploration is the share (0..1) of random picks, draws two
    fractions in [0, 1) fixed for the occurrence."""
    if len(experiments) == 1:
        return experiments[0], "the schedule's only experiment"
    if draws[0] < exploration:
        chosen = experiments[int(draws[1] * len(experiments))]
        return chosen, f"exploration: a random pick ({exploration:.0%} of picks are)"
    never = [e for e in experiments if e not in last_started]
    if never:
        return never[0], "never run by this schedule"
    chosen = min(experiments, key=lambda e: last_started[e])
    return chosen, f"least recently run (last started {last_started[chosen]})"


def cap_blast_radius(experiment: Experiment, percent: float | None) -> Experiment:
    """The experiment with no step above `percent` of the fleet."""
    if percent is None:
        return experiment
    s = experiment.settings
    ramp = tuple(RampStep(min(step.percent, percent), step.hold) for step in s.ramp)
    capped = replace(s, max_fleet_percent=min(s.max_fleet_percent, percent), ramp=ramp)
    return replace(experiment, settings=capped)
