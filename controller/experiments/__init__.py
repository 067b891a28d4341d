"""Experiments: the Chaos Toolkit-shaped model and its parser, target
selection and the ramp plan, probes and tolerances, stop conditions, run
windows, the runner, its journal, the history and the metrics."""
