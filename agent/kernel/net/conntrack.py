"""Connection tracking over ctnetlink: list flows, delete one.

A nat chain sees only the first packet of a flow, so a redirect installed
while a client's UDP socket already talks to its resolver would miss that
socket for as long as its conntrack entry lives (30 s to minutes), and a
redirected flow keeps its translation after the redirect is gone. Deleting
the flows makes the next packet start a new one, which meets the nat chain
as it is now.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from agent.kernel.net.client import NetlinkClient
from agent.kernel.net.nlsock import NetlinkFailure, attr, attrs

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE = 1, 2, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
NLA_F_NESTED = 0x8000
NFGENMSG = struct.Struct("=BBH")  # family, version, res_id

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class End:
    """One direction of a flow: where its packets go (and from where)."""

    proto: int
    src: Address
    sport: int
    dst: Address
    dport: int


@dataclass(frozen=True)
class Flow:
    family: int
    original: End
    reply: End
    key: bytes  # the CTA_TUPLE_ORIG (and CTA_ZONE) attributes that name it for a delete

    @property
    def translated(self) -> bool:
        """Whether NAT changed where it goes: the reply does not come from the
        original destination."""
        return (self.reply.src, self.reply.sport) != (self.original.dst, self.original.dport)


def _end(raw: bytes) -> End | None:
    tup = attrs(raw)
    ip, proto = attrs(tup.get(CTA_TUPLE_IP, b"")), attrs(tup.get(CTA_TUPLE_PROTO, b""))
    if CTA_IP_V4_SRC in ip:
        src, dst = ip[CTA_IP_V4_SRC], ip.get(CTA_IP_V4_DST, b"")
    else:
        src, dst = ip.get(CTA_IP_V6_SRC, b""), ip.get(CTA_IP_V6_DST, b"")
    if len(src) not in (4, 16) or len(dst) != len(src) or CTA_PROTO_NUM not in proto:
        return None

    def port(kind: int) -> int:
        value = proto.get(kind, b"\0\0")
        return int(struct.unpack(">H", value[:2])[0])

    return End(
        proto[CTA_PROTO_NUM][0],
        ipaddress.ip_address(src),
        port(CTA_PROTO_SRC_PORT),
        ipaddress.ip_address(dst),
        port(CTA_PROTO_DST_PORT),
    )


class Conntrack(NetlinkClient):
    """The conntrack table of one namespace: Conntrack.open(ref)."""

    protocol = NETLINK_NETFILTER

    def flows(self) -> list[Flow]:
        """Every tracked flow, IPv4 and IPv6."""
        body = NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
        try:
            replies = self._nl.dump(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, body, "list conntrack flows"
            )
        except NetlinkFailure as exc:
            if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP):  # no conntrack here
                return []
            raise
        out = []
        for r in replies:
            family = r.body[0]
            a = attrs(r.body, NFGENMSG.size)
            original, reply = _end(a.get(CTA_TUPLE_ORIG, b"")), _end(a.get(CTA_TUPLE_REPLY, b""))
            if original is None or reply is None:
                continue
            key = attr(CTA_TUPLE_ORIG | NLA_F_NESTED, a[CTA_TUPLE_ORIG])
            if CTA_ZONE in a:
                key += attr(CTA_ZONE, a[CTA_ZONE])
            out.append(Flow(family, original, reply, key))
        return out

    def delete(self, flow: Flow) -> bool:
        """Forget the flow; False if it is already gone (idempotent)."""
        body = NFGENMSG.pack(flow.family, 0, 0) + flow.key
        try:
            self._nl.request(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, 0, body, "delete a flow"
            )
        except NetlinkFailure as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True
