"""Fault kinds: one injector module each, plus the shared model and registry."""
