"""The kernel layer: the only code that touches the system.

Processes (procs/), cgroups, filesystems and mounts, memory and host facts,
and the network (net/: netlink, traffic control wire formats, nftables,
namespaces). It speaks in plain values: no protobuf, no fault model, no
domain errors; a vanished object is kernel.errors.Gone.
"""
