"""netem: delay, jitter, loss, duplication, corruption, reordering, rate.

Delay distributions other than uniform need a netem table. The kernel ships
none: tc sends one from iproute2's data files (normal.dist and so on), and
so do we, read from the same files, never by running tc.
"""

from __future__ import annotations

from google.protobuf.message import Message

from agent.core.errors import FailedPrecondition, InvalidArgument
from agent.core.validation import duration_seconds, number_in_range
from agent.faults.network.qdisc_tree import Shape
from agent.faults.network.shaping import Request, ShapingInjector
from agent.faults.network.traffic import parse_filter
from agent.kernel.net import tcwire
from agent.kernel.net.tcwire import NetemParams, netem
from brownout.v1 import agent_pb2 as pb

MAX_DELAY_S = 3600.0
MAX_JITTER_S = 2.0  # the kernel keeps jitter in a signed 32-bit count of ns
CARRIER_RATE = 12_500_000_000  # bytes/s (100 Gbit/s): the HTB class must never limit
CARRIER_BURST = 1 << 20
DIST_DIRS = (
    "/usr/lib/x86_64-linux-gnu/tc",
    "/usr/lib/aarch64-linux-gnu/tc",
    "/usr/lib/tc",
    "/usr/lib64/tc",
    "/usr/local/lib/tc",
)
DISTRIBUTIONS = {
    pb.DISTRIBUTION_NORMAL: "normal",
    pb.DISTRIBUTION_PARETO: "pareto",
    pb.DISTRIBUTION_PARETONORMAL: "paretonormal",
}


def load_distribution(name: str, dirs: tuple[str, ...] = DIST_DIRS) -> tuple[int, ...]:
    """iproute2's table for name, or FailedPrecondition naming where we looked."""
    try:
        return tcwire.read_distribution(name, dirs)
    except ValueError as exc:
        raise FailedPrecondition(str(exc)) from None


def _percent(field: str, value: float) -> float:
    return number_in_range(f"netem.{field}", value, 0, 100, "%")


def parse_netem(spec: pb.NetemSpec) -> NetemParams:
    """Validate every netem parameter (pure, apart from reading a distribution table)."""
    delay = duration_seconds(
        "netem.delay", spec.delay.seconds, spec.delay.nanos, maximum=MAX_DELAY_S, required=False
    )
    jitter = duration_seconds(
        "netem.jitter", spec.jitter.seconds, spec.jitter.nanos, maximum=MAX_JITTER_S, required=False
    )
    loss = _percent("loss_percent", spec.loss_percent)
    reorder = _percent("reorder_percent", spec.reorder_percent)
    params = NetemParams(
        delay_s=delay,
        jitter_s=jitter,
        delay_correlation=_percent("delay_correlation_percent", spec.delay_correlation_percent),
        loss=loss,
        loss_correlation=_percent("loss_correlation_percent", spec.loss_correlation_percent),
        duplicate=_percent("duplicate_percent", spec.duplicate_percent),
        corrupt=_percent("corrupt_percent", spec.corrupt_percent),
        reorder=reorder,
        reorder_correlation=_percent(
            "reorder_correlation_percent", spec.reorder_correlation_percent
        ),
        gap=spec.reorder_gap,
        rate_bps=spec.rate_bits_per_second // 8,
    )
    if spec.rate_bits_per_second < 0 or (0 < spec.rate_bits_per_second < 8):
        raise InvalidArgument(
            "netem.rate_bits_per_second",
            f"must be 0 (none) or at least 8 bit/s, got {spec.rate_bits_per_second}",
        )
    if spec.reorder_gap < 0:
        raise InvalidArgument("netem.reorder_gap", f"must be >= 0, got {spec.reorder_gap}")
    if spec.reorder_gap and not reorder:
        raise InvalidArgument("netem.reorder_gap", "needs netem.reorder_percent")
    if params.reorder_correlation and not reorder:
        raise InvalidArgument("netem.reorder_correlation_percent", "needs netem.reorder_percent")
    if reorder and not delay:
        raise InvalidArgument("netem.reorder_percent", "reordering needs a netem.delay > 0")
    if params.loss_correlation and not loss:
        raise InvalidArgument("netem.loss_correlation_percent", "needs netem.loss_percent")
    if params.delay_correlation and not jitter:
        raise InvalidArgument("netem.delay_correlation_percent", "needs netem.jitter")
    if jitter and not delay:
        raise InvalidArgument("netem.jitter", "needs a netem.delay > 0")
    if spec.distribution not in (pb.DISTRIBUTION_UNSPECIFIED, pb.DISTRIBUTION_UNIFORM):
        name = DISTRIBUTIONS.get(spec.distribution)
        if name is None:
            raise InvalidArgument("netem.distribution", f"unknown distribution {spec.distribution}")
        if not jitter:
            raise InvalidArgument("netem.distribution", "a distribution needs netem.jitter")
        params = NetemParams(**{**params.__dict__, "distribution": load_distribution(name)})
    if not (delay or loss or params.duplicate or params.corrupt or reorder or params.rate_bps):
        raise InvalidArgument(
            "netem",
            "changes nothing: set delay, loss_percent, duplicate_percent, corrupt_percent,"
            " reorder_percent or rate_bits_per_second",
        )
    return params


def describe(p: NetemParams, spec: pb.NetemSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    if p.delay_s:
        out["delay"] = f"{p.delay_s * 1000:g}ms"
    if p.jitter_s:
        out["jitter"] = f"{p.jitter_s * 1000:g}ms"
        dist = DISTRIBUTIONS.get(spec.distribution)
        out["distribution"] = dist or "uniform"
    for name, value in (
        ("loss", p.loss),
        ("duplicate", p.duplicate),
        ("corrupt", p.corrupt),
        ("reorder", p.reorder),
    ):
        if value:
            out[name] = f"{value:g}%"
    if p.rate_bps:
        out["rate"] = f"{p.rate_bps * 8}bit/s"
    return out


class NetemInjector(ShapingInjector):
    kind = "netem"
    survives_reboot = False
    needs = {
        "netem": "CONFIG_NET_SCH_NETEM",
        "htb": "CONFIG_NET_SCH_HTB",
        "u32": "CONFIG_NET_CLS_U32",
    }

    def parse(self, spec: Message) -> Request:
        assert isinstance(spec, pb.NetemSpec)
        params = parse_netem(spec)
        options = netem(params)
        return Request(
            field="netem",
            shape=Shape(
                root_kind="netem",
                root_options=options,
                class_rate=CARRIER_RATE,
                class_burst=CARRIER_BURST,
                leaf_kind="netem",
                leaf_options=options,
                summary=describe(params, spec),
            ),
            filter=parse_filter("netem.filter", spec.filter),
            interface=spec.interface,
            replace_existing=spec.replace_existing_qdisc,
        )
