"""Fault kinds. registry: which injectors run;
targets: a request's Target as cgroups or a network namespace; resource/:
CPU, memory, disk and IO; network/: netem, bandwidth and partitions."""
