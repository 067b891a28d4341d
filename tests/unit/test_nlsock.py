"""The netlink transport's codec, checked against pyroute2's encoder as the reference."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyroute2.netlink import nlmsg
from pyroute2.netlink.nfnetlink.nftsocket import NFPROTO_INET, nft_rule_msg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from agent.kernel.net import nlsock, tcwire
from agent.kernel.net.nftables import NFGENMSG, _rule, udata_comment
from agent.kernel.net.nlsock import NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_DONE, NLMSG_ERROR, Reply
from agent.kernel.net.rtnl import IFINFOMSG, TCMSG, tc_body

pytestmark = pytest.mark.unit


class RefTcMsg(nlmsg):  # type: ignore[misc]
    """pyroute2's view of struct tcmsg with raw options: the reference encoder."""

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


def encoded(msg: Any, msg_type: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize(
    ("kind", "options", "stab"),
    [
        ("htb", tcwire.htb_qdisc(1, 1000), b""),
        ("netem", tcwire.netem(tcwire.NetemParams(delay_s=0.05, loss=1.0)), b""),
        ("bfifo", tcwire.bfifo(64_000), b"\x01\x02\x03\x04\x05"),
    ],
)
def test_tc_messages_match_pyroute2_byte_for_byte(kind: str, options: bytes, stab: bytes) -> None:
    ref = RefTcMsg()
    ref["index"], ref["handle"], ref["parent"], ref["info"] = 7, 0xB0010000, 0xFFFFFFFF, 0x30008
    ref["attrs"] = [["TCA_KIND", kind], ["TCA_OPTIONS", options]]
    if stab:
        ref["attrs"].append(["TCA_STAB", stab])
    want = encoded(ref, 36, 0x605, 9)
    body = tc_body(7, 0xB0010000, 0xFFFFFFFF, 0x30008, kind=nlsock.asciiz(kind), options=options,
                   stab=stab)  # fmt: skip
    assert nlsock.message(36, 0x605, 9, body) == want
    # ... and our walker reads back what pyroute2 wrote.
    (reply,) = nlsock.split(want)
    assert TCMSG.unpack_from(reply.body)[1:4] == (7, 0xB0010000, 0xFFFFFFFF)
    got = nlsock.attrs(reply.body, TCMSG.size)
    assert nlsock.text(got[1]) == kind and got[2] == options and got.get(8, b"") == stab


def test_link_names_are_read_from_a_full_pyroute2_link_message() -> None:
    ref = ifinfmsg()
    ref["index"] = 42
    ref["attrs"] = [("IFLA_IFNAME", "veth-test0"), ("IFLA_MTU", 1500), ("IFLA_TXQLEN", 1000)]
    data = encoded(ref, 16, 2, 3) + encoded(ifinfmsg(), NLMSG_DONE, 2, 3)
    first, done = nlsock.split(data)
    assert (first.type, first.seq, done.type) == (16, 3, NLMSG_DONE)
    assert IFINFOMSG.unpack_from(first.body)[2] == 42
    assert nlsock.text(nlsock.attrs(first.body, IFINFOMSG.size)[3]) == "veth-test0"


def test_nft_rule_echo_gives_chain_handle_and_comment() -> None:
    ref = nft_rule_msg()
    ref["nfgen_family"] = NFPROTO_INET
    ref["attrs"] = [
        ("NFTA_RULE_TABLE", "brownout_x"),
        ("NFTA_RULE_CHAIN", "input"),
        ("NFTA_RULE_HANDLE", 0x1_0000_0007),
        ("NFTA_RULE_USERDATA", "brownout:fault-1"),
    ]
    (reply,) = nlsock.split(encoded(ref, (10 << 8) | 6, 0, 5))
    assert NFGENMSG.unpack_from(reply.body)[0] == NFPROTO_INET
    rule = _rule(nlsock.attrs(reply.body, NFGENMSG.size))
    assert (rule.chain, rule.handle, rule.comment) == ("input", 0x1_0000_0007, "brownout:fault-1")


def _error(code: int, flags: int, request: bytes, tlvs: bytes) -> Reply:
    return Reply(NLMSG_ERROR, flags, 1, struct.pack("=i", code) + request + tlvs)


def test_errors_carry_the_kernels_extended_ack_message() -> None:
    request = nlsock.message(36, 0x605, 1, tc_body(1, kind=b"netem\0"))
    msg = nlsock.attr(1, b"Specified qdisc kind is unknown\0")
    capped = _error(-2, NLM_F_ACK_TLVS | NLM_F_CAPPED, request[:16], msg)
    whole = _error(-2, NLM_F_ACK_TLVS, request, msg)
    plain = _error(-17, 0, request, b"")
    assert nlsock.error_of(capped) == (2, "Specified qdisc kind is unknown")
    assert nlsock.error_of(whole) == (2, "Specified qdisc kind is unknown")
    assert nlsock.error_of(plain) == (17, "")
    assert nlsock.error_of(_error(0, 0, request[:16], b"")) == (0, "")  # an ack
    failure = nlsock.failure(2, "", "add netem qdisc")
    assert failure.errno == 2 and "No such file or directory" in str(failure)


def test_malformed_attributes_stop_the_walk_instead_of_overrunning() -> None:
    good = nlsock.attr(3, b"eth0\0")
    truncated = struct.pack("=HH", 200, 4) + b"xx"  # claims more than is there
    assert nlsock.attrs(good + truncated) == {3: b"eth0\0"}
    assert nlsock.attrs(struct.pack("=HH", 2, 1)) == {}  # shorter than its own header
    assert nlsock.split(b"\x10\x00") == []


def test_rule_comments_are_found_among_other_user_data() -> None:
    other = bytes([1, 3]) + b"abc"  # another TLV before the comment
    assert udata_comment(other + bytes([0, 6]) + b"hello\0") == "hello"
    assert udata_comment(other) == ""
    assert udata_comment(bytes([0, 40]) + b"short\0") == "short"  # overlong length: clipped
