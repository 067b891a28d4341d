"""netem, bandwidth, partition and DNS: the options of each kind and its spec."""

from __future__ import annotations

from brownout.faultspecs import values as v
from brownout.faultspecs.options import Kind, Option, Values
from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb

PROTOCOLS = {
    "any": pb.PROTOCOL_ANY,
    "tcp": pb.PROTOCOL_TCP,
    "udp": pb.PROTOCOL_UDP,
    "icmp": pb.PROTOCOL_ICMP,
}
PROTOCOL = Option("protocol", choices=tuple(sorted(PROTOCOLS)), default="any")

# A network fault works in the host's namespace, a named or pinned one, or a process's.
NET_TARGET = (
    Option("netns", v.text, "network namespace: a name under /var/run/netns or a path to its"
           " file", group="target"),
    Option("pid", v.pid, "the network namespace of this process", group="target"),
    Option("container", v.container_id, "the network namespace of this container",
           group="target"),
)  # fmt: skip


def cidrs(name: str, help: str, required: bool = False) -> Option:
    return Option(name, v.cidr, help, required=required, repeat=True, metavar="CIDR")


def ports(name: str, help: str) -> Option:
    return Option(name, v.port_range, help, repeat=True, metavar="P[-Q]")


# Which packets a shaper touches, and where it sits.
FILTER = (
    cidrs("to", "only traffic to these (repeat)"),
    ports("port", "only these destination ports (repeat)"),
    ports("source_port", "only these source ports (repeat)"),
    PROTOCOL,
    cidrs("exclude", "never touch these (repeat)"),
    Option("interface", v.interface, "default: the default route's interface"),
    Option("replace_existing_qdisc", None,
           "replace a root qdisc Brownout cannot restore (revert leaves the kernel default)"),
)  # fmt: skip


def net_target(values: Values) -> pb.Target:
    if values["container"]:
        return pb.Target(container=values["container"])
    if values["pid"] is not None:
        return pb.Target(pid=values["pid"])
    netns = values["netns"]
    if netns:
        return pb.Target(netns_path=netns) if "/" in netns else pb.Target(netns_name=netns)
    return pb.Target()


def traffic_filter(values: Values) -> pb.TrafficFilter:
    return pb.TrafficFilter(
        destinations=values["to"],
        destination_ports=values["port"],
        source_ports=values["source_port"],
        protocol=PROTOCOLS[values["protocol"]],
        exclude=values["exclude"],
    )


DISTRIBUTIONS = {
    "uniform": pb.DISTRIBUTION_UNIFORM,
    "normal": pb.DISTRIBUTION_NORMAL,
    "pareto": pb.DISTRIBUTION_PARETO,
    "paretonormal": pb.DISTRIBUTION_PARETONORMAL,
}


def _netem(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.NetemSpec(
        delay_correlation_percent=values["correlation"],
        distribution=DISTRIBUTIONS[values["distribution"]],
        loss_percent=values["loss"],
        loss_correlation_percent=values["loss_correlation"],
        duplicate_percent=values["duplicate"],
        corrupt_percent=values["corrupt"],
        reorder_percent=values["reorder"],
        reorder_correlation_percent=values["reorder_correlation"],
        reorder_gap=values["gap"],
        rate_bits_per_second=values["rate"],
        interface=values["interface"] or "",
        filter=traffic_filter(values),
        replace_existing_qdisc=values["replace_existing_qdisc"],
    )
    if values["delay"]:
        spec.delay.CopyFrom(to_duration(values["delay"]))
    if values["jitter"]:
        spec.jitter.CopyFrom(to_duration(values["jitter"]))
    return pb.FaultSpec(netem=spec), net_target(values)


def _percent(name: str, help: str = "") -> Option:
    return Option(name, v.percent, help, default=0.0)


NETEM = Kind(
    "netem",
    "delay, lose, duplicate, corrupt or reorder packets on an interface",
    (
        Option("delay", v.duration, "e.g. 50ms", default=0.0),
        Option("jitter", v.duration, "e.g. 5ms", default=0.0),
        _percent("correlation", "delay correlation %"),
        Option("distribution", choices=tuple(sorted(DISTRIBUTIONS)), default="uniform"),
        _percent("loss", "e.g. 1%"),
        _percent("loss_correlation"),
        _percent("duplicate"),
        _percent("corrupt"),
        _percent("reorder", "needs delay"),
        _percent("reorder_correlation"),
        Option("gap", v.int_in(0, 2**32 - 1), "reorder gap", default=0),
        Option("rate", v.bit_rate, "e.g. 10mbit", default=0),
        *FILTER,
        *NET_TARGET,
    ),
    _netem,
)


def _bandwidth(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.BandwidthSpec(
        rate_bits_per_second=values["rate"],
        burst_bytes=values["burst"],
        limit_bytes=values["limit"],
        interface=values["interface"] or "",
        filter=traffic_filter(values),
        replace_existing_qdisc=values["replace_existing_qdisc"],
    )
    if values["latency"]:
        spec.latency.CopyFrom(to_duration(values["latency"]))
    return pb.FaultSpec(bandwidth=spec), net_target(values)


BANDWIDTH = Kind(
    "bandwidth",
    "limit an interface's egress rate (an HTB class, optionally filtered)",
    (
        Option("rate", v.positive_bit_rate, "e.g. 10mbit", required=True),
        Option("burst", v.positive_size, "bucket size, e.g. 32KiB", default=0),
        Option("limit", v.positive_size, "queue bytes", default=0, group="queue"),
        Option("latency", v.positive_duration, "queue time", default=0.0, group="queue"),
        *FILTER,
        *NET_TARGET,
    ),
    _bandwidth,
)

DIRECTIONS = {
    "both": pb.DIRECTION_BOTH,
    "egress": pb.DIRECTION_EGRESS,
    "ingress": pb.DIRECTION_INGRESS,
}


def _partition(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.PartitionSpec(
        peers=values["to"],
        ports=values["port"],
        protocol=PROTOCOLS[values["protocol"]],
        direction=DIRECTIONS[values["direction"]],
        exclude=values["exclude"],
    )
    return pb.FaultSpec(partition=spec), net_target(values)


PARTITION = Kind(
    "partition",
    "silently drop traffic to and from peers (nftables)",
    (
        cidrs("to", "peers to cut off (repeat)", required=True),
        ports("port", "only the peers' ports (repeat)"),
        PROTOCOL,
        Option("direction", choices=tuple(sorted(DIRECTIONS)), default="both"),
        cidrs("exclude", "never cut these (repeat)"),
        *NET_TARGET,
    ),
    _partition,
)


DNS_ANSWERS = {
    "nxdomain": pb.DNS_ANSWER_NXDOMAIN,
    "servfail": pb.DNS_ANSWER_SERVFAIL,
    "refused": pb.DNS_ANSWER_REFUSED,
    "timeout": pb.DNS_ANSWER_TIMEOUT,
    "spoof": pb.DNS_ANSWER_SPOOF,
}


def _dns(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.DnsSpec(
        resolvers=values["resolver"],
        names=values["name"],
        answer=DNS_ANSWERS.get(values["answer"] or "", pb.DNS_ANSWER_UNSPECIFIED),
        spoof_addresses=values["spoof"],
    )
    return pb.FaultSpec(dns=spec), net_target(values)


DNS = Kind(
    "dns",
    "drop DNS in a network namespace, or answer given names with an error or spoofed records",
    (
        cidrs(
            "resolver",
            "only DNS to these resolvers (repeat; default every one; with --name:"
            " single addresses, default the target's resolv.conf nameservers)",
        ),
        Option(
            "name",
            v.dns_name,
            "answer this name instead of dropping DNS: exact, or"
            " *.suffix (repeat); other names are forwarded",
            repeat=True,
            metavar="NAME",
        ),
        Option(
            "answer",
            choices=tuple(DNS_ANSWERS),
            help="what --name gets (default nxdomain; timeout: no answer)",
        ),
        Option(
            "spoof",
            v.ip_address,
            "the A/AAAA address of --answer spoof (repeat)",
            repeat=True,
            metavar="ADDRESS",
        ),
        *NET_TARGET,
    ),
    _dns,
)

KINDS = (NETEM, BANDWIDTH, PARTITION, DNS)
