"""The qdisc tree of a shaping fault, on the kernel side: inspect an interface,
snapshot its root qdisc (and whether it can be restored faithfully), build
the tree, put the previous root back, sweep leftovers, probe what works.

Layout. Whole-interface netem in another namespace uses the qdisc alone at
the root. Bandwidth limits, anything filtered, and anything in the agent's own
namespace (where the controller's traffic and the agent's listeners must stay
unshaped) use a classful tree:

    root  htb H:   default 1 (whole interface) or 0 (filtered: unmatched
      |            traffic is dequeued directly, untouched)
      +-- class H:1  carries matched traffic -- leaf qdisc L: (netem or bfifo)
    u32 filters on H: -- prio 1/2 (IPv4/IPv6) exclusions -> H:0 (direct)
                      -- prio 3/4 (IPv4/IPv6) matches    -> H:1

H is this agent's handle major (0xBxxx, derived from its instance marker),
which is also how a held interface and leftovers are recognised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import structlog

from agent.core.errors import FailedPrecondition, TargetGone
from agent.faults.network.traffic import U32Match
from agent.kernel.net import tcwire
from agent.kernel.net.netns import NetnsRef
from agent.kernel.net.rtnl import NetlinkFailure, Qdisc, Rtnl
from agent.kernel.net.tcwire import (
    ETH_P_IP,
    TC_H_ROOT,
    filter_info,
    format_handle,
    handle,
    htb_class,
    htb_qdisc,
    u32_filter,
)

log = structlog.get_logger(__name__)

BROWNOUT_MAJORS = range(0xB000, 0xC000)
# Qdiscs whose classes are made by users (others, like tbf or prio, expose
# implicit classes that come back with their options).
USER_CLASSES = frozenset({"htb", "hfsc", "drr", "qfq", "cbq", "atm"})
DIRECT_QLEN = 1000
EXCLUDE_PRIO, MATCH_PRIO = 1, 3  # +1 for IPv6


def handle_major(instance: str) -> int:
    return 0xB000 | (int(hashlib.sha256(instance.encode()).hexdigest()[:4], 16) & 0x0FFF)


class SnapshotRecord(TypedDict):
    kind: str
    handle: int
    options: str  # hex
    stab: str  # hex
    default: bool
    restorable: bool


@dataclass(frozen=True)
class Shape:
    """What a shaping fault puts on the wire, in both layouts."""

    root_kind: str | None  # the qdisc used alone at the root; None: always the tree
    root_options: bytes
    class_rate: int  # bytes/s of the HTB class carrying matched traffic
    class_burst: int
    leaf_kind: str  # the qdisc under that class
    leaf_options: bytes
    summary: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """The root qdisc found before the fault, and whether it can be put back."""

    kind: str
    handle: int
    options: bytes
    stab: bytes
    default: bool  # the kernel's own: deleting ours brings it back
    restorable: bool
    why: str = ""

    def describe(self) -> str:
        if self.default:
            return f"{self.kind} (kernel default)"
        return f"{self.kind} {format_handle(self.handle)}"

    def record(self) -> SnapshotRecord:
        return {
            "kind": self.kind,
            "handle": self.handle,
            "options": self.options.hex(),
            "stab": self.stab.hex(),
            "default": self.default,
            "restorable": self.restorable,
        }

    @classmethod
    def from_record(cls, rec: SnapshotRecord) -> Snapshot:
        return cls(
            str(rec["kind"]),
            int(rec["handle"]),
            bytes.fromhex(rec["options"]),
            bytes.fromhex(rec.get("stab") or ""),
            bool(rec["default"]),
            bool(rec["restorable"]),
        )


@dataclass(frozen=True)
class Plan:
    """A validated shaping fault: where, what, and the root found there."""

    netns: NetnsRef
    interface: str
    ifindex: int
    shape: Shape
    matches: tuple[U32Match, ...]
    default_class: int
    previous: Snapshot
    filter_text: str
    protected_text: str

    @property
    def alone(self) -> bool:
        """The shape's qdisc alone at the root, with no tree."""
        return not self.matches and self.shape.root_kind is not None


@dataclass(frozen=True)
class Found:
    interface: str
    ifindex: int
    qdiscs: tuple[Qdisc, ...]
    classes: int
    root_filters: int


def inspect(ref: NetnsRef, interface: str) -> Found | str:
    """The interface (or the default route's) and its egress tree; a str is an error."""
    with Rtnl.open(ref) as rt:
        name = interface or rt.default_route_interface()
        if not name:
            return "no default route in this namespace to take the interface from"
        index = rt.link_index(name)
        if index is None:
            present = ", ".join(sorted(rt.links().values()))
            return f"no interface {name!r} (present: {present})"
        qdiscs = rt.qdiscs(index)
        root = next((q for q in qdiscs if q.is_root), None)
        classes = rt.classes(index) if root is not None and root.handle else []
        filters = rt.filters(index, root.handle) if root is not None and root.handle else []
        return Found(name, index, tuple(qdiscs), len(classes), len(filters))


def _roundtrip(q: Qdisc) -> str:
    """Re-create q on a scratch namespace's loopback; '' if the kernel gives the same back."""
    with Rtnl.scratch() as rt:
        try:
            rt.add_qdisc(1, TC_H_ROOT, q.handle, q.kind, q.options, stab=q.stab)
        except NetlinkFailure as exc:
            return f"the kernel refuses to re-create it ({exc.strerror})"
        back = rt.root(1)
    if back is None or (back.kind, back.handle, back.options) != (q.kind, q.handle, q.options):
        return "re-creating it does not reproduce its options"
    return ""


def snapshot(found: Found) -> Snapshot:
    root = next((q for q in found.qdiscs if q.is_root), None)
    if root is None:
        return Snapshot("none", 0, b"", b"", True, True)
    if root.handle == 0 and all(q.handle == 0 for q in found.qdiscs):
        return Snapshot(root.kind, 0, root.options, root.stab, True, True)
    # Children with handle 0 are the kernel's own (tbf's inner fifo, mq's per-queue
    # defaults); any other child, a filter or a user-made class is a tree we
    # could not rebuild.
    children = [q for q in found.qdiscs if not q.is_root and q.handle != 0]
    user_classes = found.classes if root.kind in USER_CLASSES else 0
    if root.handle == 0:
        why = f"its child qdiscs were changed ({len(children)} non-default)"
    elif children or user_classes or found.root_filters:
        why = (
            f"it has a tree under it ({user_classes} classes, {len(children)} child qdiscs,"
            f" {found.root_filters} filters)"
        )
    else:
        why = _roundtrip(root)
    return Snapshot(root.kind, root.handle, root.options, root.stab, False, not why, why)


def build(plan: Plan, major: int) -> None:
    idx = plan.ifindex
    root = handle(major)
    with Rtnl.open(plan.netns) as rt:
        now = rt.root(idx)
        prev = plan.previous
        if not prev.default and (now is None or (now.kind, now.handle) != (prev.kind, prev.handle)):
            raise FailedPrecondition(
                f"the root qdisc of {plan.interface} changed since validation; retry"
            )
        replace = not prev.default
        if plan.alone:
            assert plan.shape.root_kind is not None
            rt.add_qdisc(
                idx, TC_H_ROOT, root, plan.shape.root_kind, plan.shape.root_options, replace=replace
            )
            return
        rt.add_qdisc(
            idx, TC_H_ROOT, root, "htb", htb_qdisc(plan.default_class, DIRECT_QLEN), replace=replace
        )
        shaped = handle(major, 1)
        rt.add_class(
            idx, root, shaped, "htb", htb_class(plan.shape.class_rate, plan.shape.class_burst)
        )
        rt.add_qdisc(
            idx, shaped, handle(major + 0x1000), plan.shape.leaf_kind, plan.shape.leaf_options
        )
        for m in plan.matches:
            base = EXCLUDE_PRIO if m.exclude else MATCH_PRIO
            prio = base if m.eth_protocol == ETH_P_IP else base + 1
            rt.add_filter(
                idx,
                root,
                filter_info(prio, m.eth_protocol),
                "u32",
                u32_filter(m.keys, root if m.exclude else shaped),
            )


def restore(ref: NetnsRef, interface: str, ifindex: int, major: int, previous: Snapshot) -> str:
    """Put the previous root back; returns what was done, or raises TargetGone."""
    with Rtnl.open(ref) as rt:
        if rt.link_index(interface) != ifindex:
            raise TargetGone(f"interface {interface} is gone, and its qdiscs with it")
        now = rt.root(ifindex)
        if now is None or now.handle != handle(major):
            return "nothing of ours at the root"
        if previous.default or not previous.restorable:
            rt.delete_qdisc(ifindex, TC_H_ROOT, handle(major))
            return "deleted; kernel default back"
        rt.add_qdisc(
            ifindex,
            TC_H_ROOT,
            previous.handle,
            previous.kind,
            previous.options,
            replace=True,
            stab=previous.stab,
        )
        back = rt.root(ifindex)
        if back is None or back.options != previous.options:
            log.warning("restored root qdisc differs from its snapshot", interface=interface)
        return f"restored {previous.describe()}"


def sweep(ref: NetnsRef, major: int) -> list[str]:
    swept = []
    with Rtnl.open(ref) as rt:
        for index, name in rt.links().items():
            root = rt.root(index)
            if root is not None and root.handle == handle(major):
                rt.delete_qdisc(index, TC_H_ROOT, root.handle)
                swept.append(name)
    return swept


def probe_tc(needs: tuple[str, ...]) -> dict[str, str]:
    """Which of needs fail on this kernel, tried in a scratch namespace."""
    missing: dict[str, str] = {}
    with Rtnl.scratch() as rt:
        for what in needs:
            try:
                _probe_one(rt, what)
            except NetlinkFailure as exc:
                missing[what] = str(exc)
    return missing


def _probe_one(rt: Rtnl, what: str) -> None:
    lo = 1
    if what == "u32":
        rt.add_qdisc(lo, TC_H_ROOT, handle(0xB000), "htb", htb_qdisc(0, DIRECT_QLEN))
        try:
            rt.add_filter(
                lo, handle(0xB000), filter_info(1, ETH_P_IP), "u32", u32_filter([], handle(0xB000))
            )
        finally:
            rt.delete_qdisc(lo, TC_H_ROOT, handle(0xB000))
        return
    options: dict[str, Callable[[], bytes]] = {
        "netem": lambda: tcwire.netem(tcwire.NetemParams(delay_s=0.001)),
        "htb": lambda: htb_qdisc(0, DIRECT_QLEN),
        "bfifo": lambda: tcwire.bfifo(64_000),
    }
    rt.add_qdisc(lo, TC_H_ROOT, handle(0xB000), what, options[what]())
    rt.delete_qdisc(lo, TC_H_ROOT, handle(0xB000))
