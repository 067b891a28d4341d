"""Shared machinery of the shaping faults (netem, bandwidth): one qdisc tree
per interface, the previous root snapshotted and restored, conflicts refused.

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
which is also how a held interface and leftovers are recognised. One
shaping fault holds an interface at a time: a second is refused with
ALREADY_EXISTS naming the holder (composing netem and rate limits into one
tree is possible but makes partial revert ambiguous).
"""

from __future__ import annotations

import abc
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from google.protobuf.message import Message

from agent.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, TargetGone
from agent.faults import targets
from agent.faults.base import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.faults.network.protect import protected
from agent.faults.network.traffic import Filter, U32Match, check_size, protect_matches, u32_matches
from agent.kernel.errors import Gone
from agent.kernel.net import netns, tcwire
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
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)

BROWNOUT_MAJORS = range(0xB000, 0xC000)
# Qdiscs whose classes are made by users (others, like tbf or prio, expose
# implicit classes that come back with their options).
USER_CLASSES = frozenset({"htb", "hfsc", "drr", "qfq", "cbq", "atm"})
DIRECT_QLEN = 1000
EXCLUDE_PRIO, MATCH_PRIO = 1, 3  # +1 for IPv6


def handle_major(instance: str) -> int:
    return 0xB000 | (int(hashlib.sha256(instance.encode()).hexdigest()[:4], 16) & 0x0FFF)


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

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "handle": self.handle,
            "options": self.options.hex(),
            "stab": self.stab.hex(),
            "default": self.default,
            "restorable": self.restorable,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Snapshot:
        return cls(
            str(rec["kind"]),
            int(rec["handle"]),
            bytes.fromhex(rec["options"]),
            bytes.fromhex(rec.get("stab", "")),
            bool(rec["default"]),
            bool(rec["restorable"]),
        )


@dataclass(frozen=True)
class Request:
    """A validated shaping spec, before the kernel is consulted."""

    field: str  # "netem" or "bandwidth", for messages
    shape: Shape
    filter: Filter
    interface: str  # empty: the default route's
    replace_existing: bool


@dataclass(frozen=True)
class Plan:
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


class Registry:
    """Which fault holds which interface, shared by the shaping injectors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[tuple[int, int, int], str] = {}

    def holder(self, key: tuple[int, int, int]) -> str | None:
        with self._lock:
            return self._holders.get(key)

    def claim(self, key: tuple[int, int, int], fault_id: str, what: str) -> None:
        with self._lock:
            held = self._holders.get(key)
            if held is not None and held != fault_id:
                raise AlreadyExists(f"{what} is already shaped by fault {held}; revert it first")
            self._holders[key] = fault_id

    def release(self, key: tuple[int, int, int], fault_id: str) -> None:
        with self._lock:
            if self._holders.get(key) == fault_id:
                del self._holders[key]


def _key(ref: NetnsRef, ifindex: int) -> tuple[int, int, int]:
    return (ref.dev, ref.ino, ifindex)


# ------------------------------------------------------------ kernel side


@dataclass(frozen=True)
class _Found:
    interface: str
    ifindex: int
    qdiscs: tuple[Qdisc, ...]
    classes: int
    root_filters: int


def _inspect(ref: NetnsRef, interface: str) -> _Found | str:
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
        return _Found(name, index, tuple(qdiscs), len(classes), len(filters))


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


def snapshot(found: _Found) -> Snapshot:
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


def _apply(plan: Plan, major: int) -> None:
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


def _revert(ref: NetnsRef, interface: str, ifindex: int, major: int, previous: Snapshot) -> str:
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


def _sweep(ref: NetnsRef, major: int) -> list[str]:
    swept = []
    with Rtnl.open(ref) as rt:
        for index, name in rt.links().items():
            root = rt.root(index)
            if root is not None and root.handle == handle(major):
                rt.delete_qdisc(index, TC_H_ROOT, root.handle)
                swept.append(name)
    return swept


# --------------------------------------------------------------- injector


class ShapingInjector(abc.ABC):
    """Base of NetemInjector and BandwidthInjector: they supply parse() and needs."""

    kind: str
    proto_kind: pb.FaultKind.ValueType
    spec_field: str
    # Qdiscs (and "u32") that must work for this kind, each with the kernel
    # option that provides it, checked in a scratch namespace.
    needs: dict[str, str]

    def __init__(self, ctx: InjectorContext, registry: Registry) -> None:
        self._ctx = ctx
        self._registry = registry
        self._major = handle_major(ctx.markers.instance)

    @abc.abstractmethod
    def parse(self, spec: Message) -> Request:
        """Validate the spec's own fields (no kernel access) into a Request."""

    def probe(self) -> Capability:
        try:
            missing = probe_tc(tuple(self.needs))
        except OSError as exc:
            return Capability(False, f"cannot probe traffic control in a scratch namespace: {exc}")
        if missing:
            return Capability(
                False,
                "; ".join(
                    f"{what} unavailable ({self.needs[what]}): {err}"
                    for what, err in missing.items()
                ),
            )
        return Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> Plan:
        req = self.parse(spec)
        ref = targets.network(target)
        guard = protected(self._ctx, request) if ref.own else None
        guard_matches = protect_matches(guard.peers, guard.listen_ports) if guard else []
        if req.filter.matches_all and not guard_matches:
            matches: list[U32Match] = []
            default_class = 0 if req.shape.root_kind is not None else 1
        elif req.filter.matches_all:
            matches = guard_matches
            default_class = 1
        else:
            matches = u32_matches(req.filter, guard_matches)
            default_class = 0
        check_size(f"{req.field}.filter", matches)
        found = _inspect(ref, req.interface)
        if isinstance(found, str):
            raise InvalidArgument(f"{req.field}.interface", f"{found} in {ref.label}")
        what = f"interface {found.interface} in {ref.label}"
        holder = self._registry.holder(_key(ref, found.ifindex))
        if holder:
            raise AlreadyExists(f"{what} is already shaped by fault {holder}; revert it first")
        root = next((q for q in found.qdiscs if q.is_root), None)
        if root is not None and root.handle >> 16 in BROWNOUT_MAJORS:
            raise AlreadyExists(
                f"{what} is already shaped by another Brownout agent"
                f" (root qdisc {root.kind} {format_handle(root.handle)})"
            )
        previous = snapshot(found)
        if not previous.restorable and not req.replace_existing:
            raise FailedPrecondition(
                f"{what} has root qdisc {previous.describe()}, which Brownout cannot restore"
                f" faithfully: {previous.why}. Set {req.field}.replace_existing_qdisc to replace"
                " it anyway (revert then leaves the kernel's default qdisc)"
            )
        return Plan(
            netns=ref,
            interface=found.interface,
            ifindex=found.ifindex,
            shape=req.shape,
            matches=tuple(matches),
            default_class=default_class,
            previous=previous,
            filter_text=req.filter.describe(),
            protected_text=guard.describe() if guard else "",
        )

    def apply(self, fault_id: str, plan: Any, checkpoint: Checkpoint) -> Applied:
        assert isinstance(plan, Plan)
        key = _key(plan.netns, plan.ifindex)
        self._registry.claim(key, fault_id, f"interface {plan.interface} in {plan.netns.label}")
        undo: dict[str, Any] = {
            "netns": plan.netns.record(),
            "interface": plan.interface,
            "ifindex": plan.ifindex,
            "major": self._major,
            "previous": plan.previous.record(),
        }
        try:
            checkpoint(undo)
        except BaseException:
            self._registry.release(key, fault_id)  # nothing applied: give the interface back
            raise
        _apply(plan, self._major)
        summary = {
            "netns": plan.netns.label,
            "interface": plan.interface,
            "qdisc": f"{plan.shape.root_kind if plan.alone else 'htb'}"
            f" {format_handle(handle(self._major))} (root)",
            "previous_qdisc": plan.previous.describe()
            + ("" if plan.previous.restorable else " (replaced by request: not restored)"),
            "filter": plan.filter_text,
            "u32_filters": str(len(plan.matches)),
            **plan.shape.summary,
        }
        if plan.protected_text:
            summary["unshaped"] = plan.protected_text
        return Applied(undo, summary)

    def revert(self, fault_id: str, undo: dict[str, Any] | None) -> None:
        if not undo or "netns" not in undo:
            return
        ref = NetnsRef.from_record(undo["netns"])
        ifindex, interface = int(undo["ifindex"]), str(undo["interface"])
        previous = Snapshot.from_record(undo["previous"])
        try:
            done = _revert(ref, interface, ifindex, int(undo["major"]), previous)
        except Gone:
            self._registry.release(_key(ref, ifindex), fault_id)
            raise
        self._registry.release(_key(ref, ifindex), fault_id)
        log.info("shaping reverted", fault_id=fault_id, interface=interface, done=done)

    def sweep(self) -> list[str]:
        swept = []
        for ref in netns.named_namespaces():
            try:
                names = _sweep(ref, self._major)
            except (OSError, Gone) as exc:
                log.warning("shaping sweep skipped a namespace", netns=ref.label, error=str(exc))
                continue
            swept += [
                f"qdisc {format_handle(handle(self._major))} on {n} in {ref.label}" for n in names
            ]
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
