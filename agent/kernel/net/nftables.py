"""nftables over nfnetlink: expression builders and atomic batches.

The builders are pure (they return pyroute2 messages, which encode the
expressions; unit tested); Nft sends them on an NlSocket in one transaction,
so a fault's rules land all together or not at all.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_ECHO,
    NLM_F_REQUEST,
)
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES, nfgen_msg
from pyroute2.netlink.nfnetlink.nftsocket import (
    NFPROTO_INET,
    NFT_MSG_DELCHAIN,
    NFT_MSG_DELRULE,
    NFT_MSG_DELTABLE,
    NFT_MSG_GETCHAIN,
    NFT_MSG_GETRULE,
    NFT_MSG_GETTABLE,
    NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE,
    NFT_MSG_NEWTABLE,
    nft_chain_msg,
    nft_rule_msg,
    nft_table_msg,
)

from agent.kernel.net.client import NetlinkClient
from agent.kernel.net.nlsock import NetlinkFailure, Reply, asciiz, attr, attrs, text

Msg = Any  # a pyroute2 nfgen message
Expr = dict[str, Any]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NFT_BATCH_BEGIN, NFT_BATCH_END = 0x10, 0x11
HOOK_INPUT, HOOK_OUTPUT = 1, 3
PRIORITY_RAW = -300  # before conntrack: dropped packets leave no conntrack entry
PRIORITY_DSTNAT = -100  # nat chains: destination NAT
REG_VERDICT, REG_1 = 0, 1
BASE_NETWORK, BASE_TRANSPORT = 1, 2
META_MARK, META_IIF, META_OIF, META_NFPROTO, META_L4PROTO = 3, 4, 5, 15, 16
CMP_EQ, CMP_NEQ, CMP_GTE, CMP_LTE = 0, 1, 5, 3
NF_DROP, NF_ACCEPT, NFT_JUMP, NFT_RETURN = 0, 1, -3, -5
NFPROTO = {4: 2, 6: 10}
LOOPBACK_IFINDEX = 1  # lo is interface 1 in every namespace
NETLINK_NETFILTER = 12


# ------------------------------------------------------------- expressions


def _expr(name: str, **attrs: Any) -> Expr:
    data = [(f"NFTA_{name.upper()}_{key.upper()}", value) for key, value in attrs.items()]
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": data})]}


def _value(data: bytes) -> dict[str, Any]:
    return {"attrs": [("NFTA_DATA_VALUE", data)]}


def cmp(op: int, data: bytes) -> Expr:
    return _expr("cmp", sreg=REG_1, op=op, data=_value(data))


def meta(key: int) -> Expr:
    return _expr("meta", dreg=REG_1, key=key)


def payload(base: int, offset: int, length: int) -> Expr:
    return _expr("payload", dreg=REG_1, base=base, offset=offset, len=length)


def verdict(code: int, chain: str = "") -> Expr:
    attrs: list[tuple[str, Any]] = [("NFTA_VERDICT_CODE", code)]
    if chain:
        attrs.append(("NFTA_VERDICT_CHAIN", chain))
    return _expr(
        "immediate", dreg=REG_VERDICT, data={"attrs": [("NFTA_DATA_VERDICT", {"attrs": attrs})]}
    )


def match_mark_not(mark: int) -> list[Expr]:
    """The packet's mark (SO_MARK of its socket, for local packets) is not mark."""
    return [meta(META_MARK), cmp(CMP_NEQ, struct.pack("=I", mark))]


def redirect_to_port(port: int) -> list[Expr]:
    """Destination NAT to this host's own address (loopback, for local packets)
    at port; only in a nat chain."""
    return [
        _expr("immediate", dreg=REG_1, data=_value(struct.pack(">H", port))),
        _expr("redir", reg_proto_min=REG_1, reg_proto_max=REG_1),
    ]


def match_interface(output: bool, ifindex: int) -> list[Expr]:
    return [meta(META_OIF if output else META_IIF), cmp(CMP_EQ, struct.pack("=I", ifindex))]


def match_network(net: Network, source: bool) -> list[Expr]:
    """The packet's source (or destination) address is in net."""
    exprs = [meta(META_NFPROTO), cmp(CMP_EQ, bytes([NFPROTO[net.version]]))]
    if net.prefixlen == 0:
        return exprs
    size = 4 if net.version == 4 else 16
    offset = (12 if source else 16) if net.version == 4 else (8 if source else 24)
    exprs.append(payload(BASE_NETWORK, offset, size))
    if net.prefixlen < net.max_prefixlen:
        exprs.append(
            _expr(
                "bitwise",
                sreg=REG_1,
                dreg=REG_1,
                len=size,
                mask=_value(net.netmask.packed),
                xor=_value(bytes(size)),
            )
        )
    exprs.append(cmp(CMP_EQ, net.network_address.packed))
    return exprs


def match_l4proto(number: int) -> list[Expr]:
    return [meta(META_L4PROTO), cmp(CMP_EQ, bytes([number]))]


def match_port(source: bool, first: int, last: int) -> list[Expr]:
    exprs = [payload(BASE_TRANSPORT, 0 if source else 2, 2)]
    if first == last:
        return [*exprs, cmp(CMP_EQ, struct.pack(">H", first))]
    return [*exprs, cmp(CMP_GTE, struct.pack(">H", first)), cmp(CMP_LTE, struct.pack(">H", last))]


# ---------------------------------------------------------------- messages


def _message(cls: Any, msg_type: int, flags: int, attrs: list[tuple[str, Any]]) -> Msg:
    msg = cls()
    msg["attrs"] = attrs
    msg["nfgen_family"] = NFPROTO_INET
    msg["header"]["type"] = (NFNL_SUBSYS_NFTABLES << 8) | msg_type
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
    return msg


def new_table(table: str) -> Msg:
    # No NLM_F_EXCL: adding an existing table (or chain) is a no-op.
    return _message(nft_table_msg, NFT_MSG_NEWTABLE, NLM_F_CREATE, [("NFTA_TABLE_NAME", table)])


def del_table(table: str) -> Msg:
    return _message(nft_table_msg, NFT_MSG_DELTABLE, 0, [("NFTA_TABLE_NAME", table)])


def new_base_chain(
    table: str, chain: str, hook: int, kind: str = "filter", priority: int = PRIORITY_RAW
) -> Msg:
    """A base chain on hook; kind is filter or nat (a nat chain sees only the
    first packet of each conntrack flow)."""
    return _message(
        nft_chain_msg,
        NFT_MSG_NEWCHAIN,
        NLM_F_CREATE,
        [
            ("NFTA_CHAIN_TABLE", table),
            ("NFTA_CHAIN_NAME", chain),
            (
                "NFTA_CHAIN_HOOK",
                {"attrs": [("NFTA_HOOK_HOOKNUM", hook), ("NFTA_HOOK_PRIORITY", priority)]},
            ),
            ("NFTA_CHAIN_POLICY", NF_ACCEPT),
            ("NFTA_CHAIN_TYPE", kind),
        ],
    )


def new_chain(table: str, chain: str) -> Msg:
    return _message(
        nft_chain_msg,
        NFT_MSG_NEWCHAIN,
        NLM_F_CREATE,
        [("NFTA_CHAIN_TABLE", table), ("NFTA_CHAIN_NAME", chain)],
    )


def del_chain(table: str, chain: str) -> Msg:
    return _message(
        nft_chain_msg,
        NFT_MSG_DELCHAIN,
        0,
        [("NFTA_CHAIN_TABLE", table), ("NFTA_CHAIN_NAME", chain)],
    )


def new_rule(table: str, chain: str, exprs: Sequence[Expr], comment: str, *, head: bool) -> Msg:
    """A rule at the head of chain (head) or its end; echoed back with its handle."""
    flags = NLM_F_CREATE | NLM_F_ECHO | (0 if head else NLM_F_APPEND)
    return _message(
        nft_rule_msg,
        NFT_MSG_NEWRULE,
        flags,
        [
            ("NFTA_RULE_TABLE", table),
            ("NFTA_RULE_CHAIN", chain),
            ("NFTA_RULE_EXPRESSIONS", list(exprs)),
            ("NFTA_RULE_USERDATA", comment),
        ],
    )


def del_rule(table: str, chain: str, rule_handle: int) -> Msg:
    return _message(
        nft_rule_msg,
        NFT_MSG_DELRULE,
        0,
        [
            ("NFTA_RULE_TABLE", table),
            ("NFTA_RULE_CHAIN", chain),
            ("NFTA_RULE_HANDLE", rule_handle),
        ],
    )


def _batch_marker(msg_type: int) -> Msg:
    msg = nfgen_msg()
    msg["res_id"] = NFNL_SUBSYS_NFTABLES
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = NLM_F_REQUEST
    return msg


@dataclass(frozen=True)
class Rule:
    chain: str
    handle: int
    comment: str


def _nla(cls: Any, name: str) -> int:
    """An attribute's number, from pyroute2's map of the message."""
    return next(i for i, entry in enumerate(cls.nla_map) if entry[0] == name)


NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big-endian, unused here)
RULE_TABLE = _nla(nft_rule_msg, "NFTA_RULE_TABLE")
RULE_CHAIN = _nla(nft_rule_msg, "NFTA_RULE_CHAIN")
RULE_HANDLE = _nla(nft_rule_msg, "NFTA_RULE_HANDLE")
RULE_USERDATA = _nla(nft_rule_msg, "NFTA_RULE_USERDATA")
CHAIN_TABLE = _nla(nft_chain_msg, "NFTA_CHAIN_TABLE")
CHAIN_NAME = _nla(nft_chain_msg, "NFTA_CHAIN_NAME")
TABLE_NAME = _nla(nft_table_msg, "NFTA_TABLE_NAME")
UDATA_RULE_COMMENT = 0


def _family_attrs(reply: Reply) -> tuple[int, dict[int, bytes]]:
    return NFGENMSG.unpack_from(reply.body)[0], attrs(reply.body, NFGENMSG.size)


def udata_comment(raw: bytes) -> str:
    """The comment in a rule's user data: libnftnl's TLVs (u8 type, u8 length),
    as pyroute2 and the nft tool write them; type 0 is the comment."""
    offset = 0
    while offset + 2 <= len(raw):
        kind, length = raw[offset], raw[offset + 1]
        if kind == UDATA_RULE_COMMENT:
            return text(raw[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return ""


def _rule(a: dict[int, bytes]) -> Rule:
    (rule_handle,) = struct.unpack(">Q", a.get(RULE_HANDLE, bytes(8))[:8])
    return Rule(text(a.get(RULE_CHAIN)), rule_handle, udata_comment(a.get(RULE_USERDATA, b"")))


class Nft(NetlinkClient):
    """nftables (inet family): Nft.open(ref) in a namespace, Nft.scratch() in a throwaway one."""

    protocol = NETLINK_NETFILTER

    def commit(self, messages: Sequence[Msg], what: str) -> list[Rule]:
        """Apply messages as one transaction; the rules created, with their handles."""
        data, acked = [], []
        for msg in [_batch_marker(NFT_BATCH_BEGIN), *messages, _batch_marker(NFT_BATCH_END)]:
            seq = self._nl.next_seq()
            msg["header"]["sequence_number"] = seq
            msg.encode()
            data.append(bytes(msg.data))
            if msg["header"]["flags"] & NLM_F_ACK:
                acked.append(seq)
        replies = self._nl.transact(b"".join(data), acked, what)
        return [_rule(_family_attrs(r)[1]) for r in replies if r.type & 0xFF == NFT_MSG_NEWRULE]

    def _dump(self, msg_type: int, body_attrs: bytes = b"") -> list[dict[int, bytes]]:
        body = NFGENMSG.pack(NFPROTO_INET, 0, 0) + body_attrs
        try:
            replies = self._nl.dump(
                (NFNL_SUBSYS_NFTABLES << 8) | msg_type, body, "list nftables objects"
            )
        except NetlinkFailure as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise
        out = []
        for r in replies:
            family, a = _family_attrs(r)
            if family == NFPROTO_INET:
                out.append(a)
        return out

    def drop_tables(self, prefix: str) -> list[str]:
        """Delete every table whose name starts with prefix; their names."""
        mine = [t for t in self.tables() if t.startswith(prefix)]
        for table in mine:
            self.commit([del_table(table)], f"delete table {table}")
        return mine

    def drop_table(self, table: str) -> bool:
        """Delete the table if it is there (idempotent); whether it was."""
        if table not in self.tables():
            return False
        self.commit([del_table(table)], f"delete table {table}")
        return True

    def tables(self) -> list[str]:
        return [text(a.get(TABLE_NAME)) for a in self._dump(NFT_MSG_GETTABLE)]

    def chains(self, table: str) -> list[str]:
        return [
            text(a.get(CHAIN_NAME))
            for a in self._dump(NFT_MSG_GETCHAIN)
            if text(a.get(CHAIN_TABLE)) == table
        ]

    def rules(self, table: str) -> list[Rule]:
        return [
            _rule(a)
            for a in self._dump(NFT_MSG_GETRULE, attr(RULE_TABLE, asciiz(table)))
            if text(a.get(RULE_TABLE)) == table
        ]
