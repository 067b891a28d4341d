"""rtnetlink: links, routes, qdiscs, classes and filters, on an NlSocket.

Traffic-control options travel as raw bytes both ways: a dumped qdisc's
options can be sent back unchanged (a faithful restore), and agent.tcwire
encodes what we add. Messages follow include/uapi/linux/rtnetlink.h.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE
from pyroute2.netlink.rtnl import (
    RTM_DELQDISC,
    RTM_GETLINK,
    RTM_GETQDISC,
    RTM_GETROUTE,
    RTM_GETTCLASS,
    RTM_GETTFILTER,
    RTM_NEWQDISC,
    RTM_NEWTCLASS,
    RTM_NEWTFILTER,
)

from agent.kernel.net.client import NetlinkClient
from agent.kernel.net.nlsock import NetlinkFailure, Reply, asciiz, attr, attrs, text
from agent.kernel.net.tcwire import TC_H_ROOT

TC_H_INGRESS = 0xFFFFFFF1  # also clsact's parent: not part of the egress tree
MAIN_TABLE = 254
NETLINK_ROUTE = 0
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
IFLA_IFNAME = 3
TCA_KIND, TCA_OPTIONS, TCA_STAB = 1, 2, 8
RTA_OIF, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 4, 6, 9, 15

__all__ = ["NetlinkFailure", "Qdisc", "Rtnl", "TcObject", "tc_body"]


def tc_body(index: int, handle: int = 0, parent: int = 0, info: int = 0, **tca: bytes) -> bytes:
    """struct tcmsg and its attributes (kind, options, stab), as the kernel reads them."""
    body = TCMSG.pack(socket.AF_UNSPEC, index, handle, parent, info)
    if "kind" in tca:
        body += attr(TCA_KIND, tca["kind"])
    if "options" in tca:
        body += attr(TCA_OPTIONS, tca["options"])
    if tca.get("stab"):
        body += attr(TCA_STAB, tca["stab"])
    return body


@dataclass(frozen=True)
class Qdisc:
    kind: str
    handle: int
    parent: int
    options: bytes
    stab: bytes = b""

    @property
    def is_root(self) -> bool:
        return self.parent == TC_H_ROOT


@dataclass(frozen=True)
class TcObject:
    """A class or filter, enough to tell whether a qdisc has a tree under it."""

    kind: str
    handle: int
    parent: int


def _tc(reply: Reply) -> tuple[int, int, int, dict[int, bytes]]:
    _family, index, handle, parent, _info = TCMSG.unpack_from(reply.body)
    return index, handle, parent, attrs(reply.body, TCMSG.size)


class Rtnl(NetlinkClient):
    """rtnetlink: Rtnl.open(ref) in a namespace, Rtnl.scratch() in a throwaway one."""

    protocol = NETLINK_ROUTE

    # ----------------------------------------------------------- links

    def links(self) -> dict[int, str]:
        out: dict[int, str] = {}
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for m in self._nl.dump(RTM_GETLINK, body, "list interfaces"):
            _family, _type, index, _flags, _change = IFINFOMSG.unpack_from(m.body)
            out[index] = text(attrs(m.body, IFINFOMSG.size).get(IFLA_IFNAME))
        return out

    def link_index(self, name: str) -> int | None:
        """The index of interface name, or None if there is none."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, asciiz(name))
        try:
            replies = self._nl.request(RTM_GETLINK, 0, body, f"look up interface {name}")
        except NetlinkFailure as exc:
            if exc.errno in (errno.ENODEV, errno.EINVAL, errno.ERANGE):
                return None  # EINVAL/ERANGE: a name no interface can have
            raise
        return next((IFINFOMSG.unpack_from(m.body)[2] for m in replies), None)

    def default_route_interface(self) -> str | None:
        """The interface of the main table's default route, IPv4 first."""
        best: tuple[int, int, int] | None = None  # (family rank, metric, ifindex)
        body = RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
        for m in self._nl.dump(RTM_GETROUTE, body, "list routes"):
            family, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = RTMSG.unpack_from(
                m.body
            )
            a = attrs(m.body, RTMSG.size)
            if RTA_TABLE in a:
                (table,) = struct.unpack("=I", a[RTA_TABLE][:4])
            if dst_len != 0 or table != MAIN_TABLE:
                continue
            oif: int | None = None
            if RTA_OIF in a:
                (oif,) = struct.unpack("=i", a[RTA_OIF][:4])
            elif len(a.get(RTA_MULTIPATH, b"")) >= RTNEXTHOP.size:
                oif = RTNEXTHOP.unpack_from(a[RTA_MULTIPATH])[3]
            if oif is None:
                continue
            metric = struct.unpack("=I", a[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in a else 0
            candidate = (0 if family == socket.AF_INET else 1, metric, oif)
            if best is None or candidate < best:
                best = candidate
        return self.links().get(best[2]) if best else None

    # -------------------------------------------------------------- tc

    def qdiscs(self, index: int) -> list[Qdisc]:
        """Egress qdiscs of one interface (ingress and clsact are left out)."""
        out = []
        for m in self._nl.dump(RTM_GETQDISC, tc_body(index), "list qdiscs"):
            ifindex, handle, parent, a = _tc(m)
            kind = text(a.get(TCA_KIND))
            if ifindex != index or parent == TC_H_INGRESS or kind in ("ingress", "clsact"):
                continue
            out.append(Qdisc(kind, handle, parent, a.get(TCA_OPTIONS, b""), a.get(TCA_STAB, b"")))
        return out

    def root(self, index: int) -> Qdisc | None:
        return next((q for q in self.qdiscs(index) if q.is_root), None)

    def classes(self, index: int) -> list[TcObject]:
        out = []
        for m in self._nl.dump(RTM_GETTCLASS, tc_body(index), "list classes"):
            ifindex, handle, parent, a = _tc(m)
            if ifindex == index:
                out.append(TcObject(text(a.get(TCA_KIND)), handle, parent))
        return out

    def filters(self, index: int, parent: int) -> list[TcObject]:
        out = []
        body = tc_body(index, parent=parent)
        for m in self._nl.dump(RTM_GETTFILTER, body, "list filters"):
            ifindex, handle, parent_, a = _tc(m)
            kind = text(a.get(TCA_KIND))
            if ifindex == index and kind:
                out.append(TcObject(kind, handle, parent_))
        return out

    def add_qdisc(
        self,
        index: int,
        parent: int,
        handle: int,
        kind: str,
        options: bytes,
        *,
        replace: bool = False,
        stab: bytes = b"",
    ) -> None:
        """Create a qdisc; replace swaps out whatever sits at parent, otherwise
        an existing non-default qdisc there is an error (EEXIST)."""
        body = tc_body(index, handle, parent, kind=asciiz(kind), options=options, stab=stab)
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._nl.request(RTM_NEWQDISC, flags, body, f"add {kind} qdisc")

    def delete_qdisc(self, index: int, parent: int, handle: int) -> None:
        self._nl.request(RTM_DELQDISC, 0, tc_body(index, handle, parent), "delete qdisc")

    def add_class(self, index: int, parent: int, classid: int, kind: str, options: bytes) -> None:
        body = tc_body(index, classid, parent, kind=asciiz(kind), options=options)
        self._nl.request(RTM_NEWTCLASS, NLM_F_CREATE | NLM_F_EXCL, body, f"add {kind} class")

    def add_filter(self, index: int, parent: int, info: int, kind: str, options: bytes) -> None:
        body = tc_body(index, 0, parent, info, kind=asciiz(kind), options=options)
        self._nl.request(RTM_NEWTFILTER, NLM_F_CREATE, body, f"add {kind} filter")
