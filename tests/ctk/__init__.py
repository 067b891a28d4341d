"""Chaos Toolkit round trip: python functions and a control that experiment
files name, the corpus of experiments, and the helpers that run it."""
