"""The core: the fault manager and its state machine, leases (the dead-man's
switch) on a monotonic scheduler, the journal, events and metrics. It works
on the domain model (core.model) and never on the wire format: specs and
targets are opaque to it, and api/ converts."""
