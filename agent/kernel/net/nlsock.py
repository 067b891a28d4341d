"""A synchronous netlink socket and the reply walker: the agent's netlink transport.

pyroute2 supplies the uapi constants and encodes the nftables messages; the
transport is ours because pyroute2 0.9's sockets are asyncio-only (an event
loop per operation) and decode every attribute of every reply (about 1 ms for
a four-link dump), which made one shaping fault cost more than a `tc`
process. The agent reads a handful of attributes from fixed-layout replies,
so it walks them with struct. One request (or one batch) is in flight per
socket at a time; replies are matched to it by sequence number, so a reply
left over from an earlier request can never be taken for this one's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSGERR_ATTR_MSG = 1
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
ATTR = struct.Struct("=HH")  # struct nlattr
RECV_TIMEOUT = 10.0  # a kernel that does not answer within this is broken
RECV_BUFFER = 1 << 16  # dump datagrams are at most 32 KiB; a larger reply is an error


class NetlinkFailure(OSError):
    """The kernel refused a request; carries errno and the kernel's message."""


@dataclass(frozen=True)
class Reply:
    """One netlink message of a reply: its type, flags and what follows the header."""

    type: int
    flags: int
    seq: int
    body: bytes


def align(n: int) -> int:
    return (n + 3) & ~3


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = ATTR.size + len(payload)
    return ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def asciiz(text: str) -> bytes:
    return text.encode() + b"\0"


def attrs(buf: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes of buf from offset, by type (the last one wins)."""
    out: dict[int, bytes] = {}
    end = len(buf)
    while offset + ATTR.size <= end:
        length, kind = ATTR.unpack_from(buf, offset)
        if length < ATTR.size or offset + length > end:
            break  # malformed: stop rather than read past the message
        out[kind & NLA_TYPE_MASK] = buf[offset + ATTR.size : offset + length]
        offset += align(length)
    return out


def text(value: bytes | None) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace") if value else ""


def split(data: bytes) -> list[Reply]:
    """The messages of one datagram."""
    out = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, msg_type, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > len(data):
            break
        out.append(Reply(msg_type, flags, seq, data[offset + HEADER.size : offset + length]))
        offset += align(length)
    return out


def error_of(reply: Reply) -> tuple[int, str]:
    """(errno, the kernel's extended-ack message) of an NLMSG_ERROR or NLMSG_DONE;
    errno 0 is an ack."""
    if len(reply.body) < 4:
        return 0, ""
    (code,) = struct.unpack_from("=i", reply.body)
    if not reply.flags & NLM_F_ACK_TLVS:
        return -code, ""
    if reply.type == NLMSG_DONE:
        tlv = 4
    else:  # after the error code comes the request's header, and its body unless capped
        (orig_len,) = struct.unpack_from("=I", reply.body, 4) if len(reply.body) >= 8 else (0,)
        tlv = 4 + (HEADER.size if reply.flags & NLM_F_CAPPED else align(orig_len))
    return -code, text(attrs(reply.body, tlv).get(NLMSGERR_ATTR_MSG))


def failure(code: int, detail: str, what: str) -> NetlinkFailure:
    return NetlinkFailure(code, f"{what}: {detail or os.strerror(code)}")


class NlSocket:
    """A netlink socket of one protocol, bound in the namespace it was created in."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0
        # Set when the socket itself failed (not the kernel refusing a request):
        # such a socket is closed rather than reused.
        self.broken = False
        self._buf = bytearray(RECV_BUFFER)
        for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            with contextlib.suppress(OSError):  # optional niceties (Linux >= 4.12 / 4.3)
                sock.setsockopt(SOL_NETLINK, option, 1)
        sock.settimeout(RECV_TIMEOUT)
        sock.bind((0, 0))

    def close(self) -> None:
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._sock.fileno() == -1

    def __enter__(self) -> NlSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    def request(self, msg_type: int, flags: int, body: bytes, what: str) -> list[Reply]:
        """Send one request with an ack asked for, so it always ends with a definite
        answer; the replies before the ack (a GET's answer), or NetlinkFailure."""
        seq = self.next_seq()
        self._send(message(msg_type, flags | NLM_F_REQUEST | NLM_F_ACK, seq, body))
        return self._collect({seq}, what, dump=False)

    def dump(self, msg_type: int, body: bytes, what: str) -> list[Reply]:
        """Every part of a dump, or NetlinkFailure."""
        seq = self.next_seq()
        self._send(message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        return self._collect({seq}, what, dump=True)

    def transact(self, data: bytes, acked: Iterable[int], what: str) -> list[Reply]:
        """Send pre-encoded messages in one write (an nfnetlink batch); every
        sequence number in acked gets an ack or an error. The other replies
        (echoes) are returned."""
        self._send(data)
        return self._collect(set(acked), what, dump=False)

    def _collect(self, pending: set[int], what: str, dump: bool) -> list[Reply]:
        wanted = set(pending)
        out: list[Reply] = []
        err: tuple[int, str] | None = None
        while pending:
            for reply in self._recv():
                if reply.seq not in wanted:
                    continue  # a late reply to an earlier request
                if reply.type == NLMSG_ERROR or (dump and reply.type == NLMSG_DONE):
                    pending.discard(reply.seq)
                    code, detail = error_of(reply)
                    if code and err is None:
                        err = (code, detail)
                elif reply.type != NLMSG_NOOP:
                    out.append(reply)
        if err is not None:
            raise failure(err[0], err[1], what)
        return out

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError:
            self.broken = True
            raise

    def _recv(self) -> list[Reply]:
        try:
            n = self._sock.recv_into(self._buf, 0, socket.MSG_TRUNC)  # n: the datagram's size
        except TimeoutError:
            self.broken = True
            raise NetlinkFailure(errno.ETIMEDOUT, "netlink: no answer from the kernel") from None
        except OSError:  # e.g. ENOBUFS: replies were dropped, the stream is unusable
            self.broken = True
            raise
        if n > len(self._buf):
            self.broken = True
            raise NetlinkFailure(errno.EMSGSIZE, f"netlink: a {n}-byte reply overflowed the buffer")
        return split(bytes(self._buf[:n]))


def new_socket(protocol: int) -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
