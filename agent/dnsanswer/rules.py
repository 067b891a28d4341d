"""Which names a DNS fault answers, and with what (pure; dnslib parses and
builds the messages)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum, StrEnum

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from brownout.dnsnames import normalize, parse_pattern

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

HEADER_SIZE = 12


class Answer(StrEnum):
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    SPOOF = "spoof"


RCODES = {
    Answer.NXDOMAIN: RCODE.NXDOMAIN,
    Answer.SERVFAIL: RCODE.SERVFAIL,
    Answer.REFUSED: RCODE.REFUSED,
}


@dataclass(frozen=True)
class Names:
    exact: frozenset[str]
    suffixes: tuple[str, ...]  # ".example.com" for *.example.com

    @classmethod
    def of(cls, patterns: list[str]) -> Names:
        normal = [parse_pattern(p) for p in patterns]
        return cls(
            frozenset(p for p in normal if not p.startswith("*.")),
            tuple(sorted({p[1:] for p in normal if p.startswith("*.")})),
        )

    def match(self, name: str) -> bool:
        name = normalize(name)
        return name in self.exact or name.endswith(self.suffixes)


class Verdict(Enum):
    ANSWER = "answer"  # send the reply built here
    DROP = "drop"  # say nothing: the client times out
    FORWARD = "forward"  # the query is not ours: pass it to the resolver


@dataclass(frozen=True)
class Policy:
    names: Names
    answer: Answer
    spoof: tuple[Address, ...] = ()

    def decide(self, data: bytes) -> tuple[Verdict, bytes]:
        """What to do with one query message: a verdict, and the reply to send."""
        if len(data) < HEADER_SIZE:
            return Verdict.DROP, b""  # not DNS: nothing a resolver could answer either
        try:
            query = DNSRecord.parse(data)
        except DNSError:
            return Verdict.FORWARD, b""  # not ours to judge
        if query.header.qr or not query.questions:
            return Verdict.FORWARD, b""
        if not self.names.match(str(query.q.qname)):
            return Verdict.FORWARD, b""
        if self.answer is Answer.TIMEOUT:
            return Verdict.DROP, b""
        reply = query.reply()
        if self.answer is Answer.SPOOF:
            for address in self.spoof:
                if query.q.qtype == QTYPE.A and address.version == 4:
                    reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(str(address)), ttl=0))
                elif query.q.qtype == QTYPE.AAAA and address.version == 6:
                    reply.add_answer(RR(query.q.qname, QTYPE.AAAA, rdata=AAAA(str(address)), ttl=0))
        else:
            reply.header.rcode = RCODES[self.answer]
        return Verdict.ANSWER, reply.pack()
