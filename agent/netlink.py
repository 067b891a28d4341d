"""rtnetlink through pyroute2: links, routes, qdiscs, classes and filters.

Everything here is async and runs on a thread that agent.netns placed in the
target namespace. Traffic-control messages use RawTcMsg, a pyroute2 message
whose TCA_OPTIONS is plain bytes: a dumped qdisc's options can then be sent
back unchanged (a faithful restore), and agent.tcwire encodes what we add.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELQDISC,
    RTM_DELTCLASS,
    RTM_DELTFILTER,
    RTM_GETQDISC,
    RTM_GETTCLASS,
    RTM_GETTFILTER,
    RTM_NEWQDISC,
    RTM_NEWTCLASS,
    RTM_NEWTFILTER,
)

from agent.tcwire import TC_H_ROOT

# pyroute2 logs every message at debug level: far too much for the agent's log.
logging.getLogger("pyroute2").setLevel(logging.WARNING)

TC_H_INGRESS = 0xFFFFFFF1  # also clsact's parent: not part of the egress tree
MAIN_TABLE = 254


class RawTcMsg(nlmsg):  # type: ignore[misc]
    """struct tcmsg with TCA_OPTIONS and TCA_STAB kept as raw bytes."""

    prefix = "TCA_"
    fields = (
        ("family", "B"),
        ("pad1", "B"),
        ("pad2", "H"),
        ("index", "i"),
        ("handle", "I"),
        ("parent", "I"),
        ("info", "I"),
    )
    nla_map = (
        ("TCA_UNSPEC", "none"),
        ("TCA_KIND", "asciiz"),
        ("TCA_OPTIONS", "cdata"),
        ("TCA_STATS", "none"),
        ("TCA_XSTATS", "none"),
        ("TCA_RATE", "none"),
        ("TCA_FCNT", "none"),
        ("TCA_STATS2", "none"),
        ("TCA_STAB", "cdata"),
    )


class NetlinkFailure(OSError):
    """The kernel refused a request; carries errno and the kernel's message."""


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


def _failure(exc: NetlinkError, what: str) -> NetlinkFailure:
    detail = exc.args[1] if len(exc.args) > 1 and exc.args[1] else errno.errorcode.get(exc.code)
    return NetlinkFailure(exc.code, f"{what}: {detail}")


class Rtnl:
    """One rtnetlink connection in the current thread's namespace."""

    def __init__(self) -> None:
        self._ipr: Any = None

    async def __aenter__(self) -> Rtnl:
        self._ipr = AsyncIPRoute(ext_ack=True)
        await self._ipr.setup_endpoint()
        for msg_type in (RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTCLASS, RTM_DELTCLASS):
            self._ipr.marshal.msg_map[msg_type] = RawTcMsg
        for msg_type in (RTM_NEWTFILTER, RTM_DELTFILTER):
            self._ipr.marshal.msg_map[msg_type] = RawTcMsg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ipr.close()

    # ----------------------------------------------------------- links

    async def links(self) -> dict[int, str]:
        out: dict[int, str] = {}
        async for link in await self._ipr.link("dump"):
            out[int(link["index"])] = str(link.get_attr("IFLA_IFNAME"))
        return out

    async def default_route_interface(self) -> str | None:
        """The interface of the main table's default route, IPv4 first."""
        names = await self.links()
        best: tuple[int, int, int] | None = None  # (family rank, metric, ifindex)
        async for route in await self._ipr.route("dump", table=MAIN_TABLE):
            if route["dst_len"] != 0 or route.get_attr("RTA_TABLE") not in (None, MAIN_TABLE):
                continue
            oif = route.get_attr("RTA_OIF")
            if oif is None:
                hops = route.get_attr("RTA_MULTIPATH") or []
                oif = hops[0]["oif"] if hops else None
            if oif is None:
                continue
            rank = 0 if route["family"] == socket.AF_INET else 1
            candidate = (rank, int(route.get_attr("RTA_PRIORITY") or 0), int(oif))
            if best is None or candidate < best:
                best = candidate
        return names.get(best[2]) if best else None

    # -------------------------------------------------------------- tc

    async def _request(self, msg: RawTcMsg, msg_type: int, flags: int, what: str) -> list[Any]:
        try:
            return [m async for m in await self._ipr.nlm_request(msg, msg_type, flags)]
        except NetlinkError as exc:
            raise _failure(exc, what) from None

    @staticmethod
    def _msg(index: int, handle: int = 0, parent: int = 0, info: int = 0) -> RawTcMsg:
        msg = RawTcMsg()
        msg["family"] = socket.AF_UNSPEC
        msg["index"] = index
        msg["handle"] = handle
        msg["parent"] = parent
        msg["info"] = info
        return msg

    async def qdiscs(self, index: int) -> list[Qdisc]:
        """Egress qdiscs of one interface (ingress and clsact are left out)."""
        out = []
        dump = await self._request(
            self._msg(index), RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, "list qdiscs"
        )
        for m in dump:
            if m["index"] != index or m["parent"] == TC_H_INGRESS:
                continue
            kind = m.get_attr("TCA_KIND")
            if kind in ("ingress", "clsact"):
                continue
            out.append(
                Qdisc(
                    kind=str(kind),
                    handle=int(m["handle"]),
                    parent=int(m["parent"]),
                    options=bytes(m.get_attr("TCA_OPTIONS") or b""),
                    stab=bytes(m.get_attr("TCA_STAB") or b""),
                )
            )
        return out

    async def root(self, index: int) -> Qdisc | None:
        return next((q for q in await self.qdiscs(index) if q.is_root), None)

    async def classes(self, index: int) -> list[TcObject]:
        dump = await self._request(
            self._msg(index), RTM_GETTCLASS, NLM_F_REQUEST | NLM_F_DUMP, "list classes"
        )
        return [
            TcObject(str(m.get_attr("TCA_KIND")), int(m["handle"]), int(m["parent"]))
            for m in dump
            if m["index"] == index
        ]

    async def filters(self, index: int, parent: int) -> list[TcObject]:
        dump = await self._request(
            self._msg(index, parent=parent),
            RTM_GETTFILTER,
            NLM_F_REQUEST | NLM_F_DUMP,
            "list filters",
        )
        return [
            TcObject(str(m.get_attr("TCA_KIND")), int(m["handle"]), int(m["parent"]))
            for m in dump
            if m["index"] == index and m.get_attr("TCA_KIND")
        ]

    async def add_qdisc(
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
        msg = self._msg(index, handle, parent)
        attrs: list[list[Any]] = [["TCA_KIND", kind], ["TCA_OPTIONS", options]]
        if stab:
            attrs.append(["TCA_STAB", stab])
        msg["attrs"] = attrs
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        flags |= NLM_F_REPLACE if replace else NLM_F_EXCL
        await self._request(msg, RTM_NEWQDISC, flags, f"add {kind} qdisc")

    async def delete_qdisc(self, index: int, parent: int, handle: int) -> None:
        await self._request(
            self._msg(index, handle, parent),
            RTM_DELQDISC,
            NLM_F_REQUEST | NLM_F_ACK,
            "delete qdisc",
        )

    async def add_class(
        self, index: int, parent: int, classid: int, kind: str, options: bytes
    ) -> None:
        msg = self._msg(index, classid, parent)
        msg["attrs"] = [["TCA_KIND", kind], ["TCA_OPTIONS", options]]
        await self._request(
            msg,
            RTM_NEWTCLASS,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            f"add {kind} class",
        )

    async def add_filter(
        self, index: int, parent: int, info: int, kind: str, options: bytes
    ) -> None:
        msg = self._msg(index, 0, parent, info)
        msg["attrs"] = [["TCA_KIND", kind], ["TCA_OPTIONS", options]]
        await self._request(
            msg, RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, f"add {kind} filter"
        )
