"""The shaping injectors' common part (netem, bandwidth): validate a spec into
a qdisc tree plan (qdisc_tree), claim the interface, apply, revert.

One shaping fault holds an interface at a time: a second is refused with
ALREADY_EXISTS naming the holder (composing netem and rate limits into one
tree is possible but makes partial revert ambiguous).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog
from google.protobuf.message import Message

from agent.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.faults import targets
from agent.faults.network import qdisc_tree
from agent.faults.network.protect import protected
from agent.faults.network.qdisc_tree import BROWNOUT_MAJORS, Plan, Shape, Snapshot, SnapshotRecord
from agent.faults.network.traffic import Filter, U32Match, check_size, protect_matches, u32_matches
from agent.kernel.errors import Gone
from agent.kernel.net import netns
from agent.kernel.net.netns import NetnsRef
from agent.kernel.net.tcwire import format_handle, handle
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)


class ShapingUndo(TypedDict):
    netns: dict[str, Any]
    interface: str
    ifindex: int
    major: int
    previous: SnapshotRecord


@dataclass(frozen=True)
class Request:
    """A validated shaping spec, before the kernel is consulted."""

    field: str  # "netem" or "bandwidth", for messages
    shape: Shape
    filter: Filter
    interface: str  # empty: the default route's
    replace_existing: bool


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


class ShapingInjector(abc.ABC):
    """Base of NetemInjector and BandwidthInjector: they supply parse() and needs."""

    kind: str
    # Qdiscs (and "u32") that must work for this kind, each with the kernel
    # option that provides it, checked in a scratch namespace.
    needs: dict[str, str]

    def __init__(self, ctx: InjectorContext, registry: Registry) -> None:
        self._ctx = ctx
        self._registry = registry
        self._major = qdisc_tree.handle_major(ctx.markers.instance)

    @abc.abstractmethod
    def parse(self, spec: Message) -> Request:
        """Validate the spec's own fields (no kernel access) into a Request."""

    def probe(self) -> Capability:
        try:
            missing = qdisc_tree.probe_tc(tuple(self.needs))
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
        guard_matches = (
            protect_matches(guard.peers, guard.listen_ports, guard.udp_ports) if guard else []
        )
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
        found = qdisc_tree.inspect(ref, req.interface)
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
        previous = qdisc_tree.snapshot(found)
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

    def apply(self, fault_id: str, plan: Plan, checkpoint: Checkpoint) -> Applied:
        key = _key(plan.netns, plan.ifindex)
        self._registry.claim(key, fault_id, f"interface {plan.interface} in {plan.netns.label}")
        undo: ShapingUndo = {
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
        qdisc_tree.build(plan, self._major)
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

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        if not undo or "netns" not in undo:
            return
        ref = NetnsRef.from_record(undo["netns"])
        ifindex, interface = int(undo["ifindex"]), str(undo["interface"])
        previous = Snapshot.from_record(undo["previous"])
        try:
            done = qdisc_tree.restore(ref, interface, ifindex, int(undo["major"]), previous)
        except Gone:
            self._registry.release(_key(ref, ifindex), fault_id)
            raise
        self._registry.release(_key(ref, ifindex), fault_id)
        log.info("shaping reverted", fault_id=fault_id, interface=interface, done=done)

    def sweep(self) -> list[str]:
        swept = []
        for ref in netns.named_namespaces():
            try:
                names = qdisc_tree.sweep(ref, self._major)
            except (OSError, Gone) as exc:
                log.warning("shaping sweep skipped a namespace", netns=ref.label, error=str(exc))
                continue
            swept += [
                f"qdisc {format_handle(handle(self._major))} on {n} in {ref.label}" for n in names
            ]
        return swept
