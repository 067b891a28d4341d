"""The DNS answerer's decisions (dnslib messages in, verdicts and replies out),
name patterns, and the redirect rules a DNS fault with names installs."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from agent.dnsanswer.rules import Answer, Names, Policy, Verdict
from agent.faults.network.dns import ANSWERER_MARK, redirect_messages
from brownout.dnsnames import parse_pattern

pytestmark = pytest.mark.unit


def query(name: str, qtype: str = "A") -> bytes:
    return bytes(DNSRecord.question(name, qtype).pack())


@pytest.mark.parametrize(
    ("name", "matched"),
    [
        ("db.example.com", True),
        ("DB.Example.COM.", True),
        ("x.db.example.com", False),  # exact means exact
        ("a.cache.internal", True),
        ("b.a.cache.internal", True),
        ("cache.internal", False),  # *.suffix is what is under it, not the apex
        ("xcache.internal", False),
        ("example.com", False),
    ],
)
def test_names_match_exactly_or_under_a_suffix(name: str, matched: bool) -> None:
    assert Names.of(["db.example.com", "*.Cache.Internal."]).match(name) is matched


@pytest.mark.parametrize(
    "bad", ["", ".", "*", "*.", "a b", "x.*.test", "-a.test", "a..b", "é.test"]
)
def test_bad_patterns_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError, match=r"name|label"):
        parse_pattern(bad)


def test_a_63_character_label_is_a_label_and_64_is_not() -> None:
    assert parse_pattern("a" * 63 + ".test")
    with pytest.raises(ValueError):
        parse_pattern("a" * 64 + ".test")


@pytest.mark.parametrize(
    ("answer", "rcode"),
    [(Answer.NXDOMAIN, RCODE.NXDOMAIN), (Answer.SERVFAIL, RCODE.SERVFAIL),
     (Answer.REFUSED, RCODE.REFUSED)],
)  # fmt: skip
def test_a_matching_query_gets_the_error_with_its_own_id(answer: Answer, rcode: int) -> None:
    data = query("db.example.com")
    verdict, reply = Policy(Names.of(["db.example.com"]), answer).decide(data)
    assert verdict is Verdict.ANSWER
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == DNSRecord.parse(data).header.id
    assert parsed.header.qr == 1 and parsed.header.rcode == rcode
    assert str(parsed.q.qname) == "db.example.com."
    assert not parsed.rr


def test_other_names_are_forwarded_and_a_timeout_says_nothing() -> None:
    policy = Policy(Names.of(["db.example.com"]), Answer.TIMEOUT)
    assert policy.decide(query("api.example.com"))[0] is Verdict.FORWARD
    assert policy.decide(query("db.example.com")) == (Verdict.DROP, b"")


def test_a_spoof_answers_each_family_with_its_own_records() -> None:
    spoof = (ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::7"))
    policy = Policy(Names.of(["*.example.com"]), Answer.SPOOF, spoof)
    records = {}
    for qtype in ("A", "AAAA", "MX"):
        verdict, reply = policy.decide(query("db.example.com", qtype))
        parsed = DNSRecord.parse(reply)
        assert verdict is Verdict.ANSWER and parsed.header.rcode == RCODE.NOERROR
        records[qtype] = [(QTYPE.get(r.rtype), str(r.rdata), r.ttl) for r in parsed.rr]
    assert records == {
        "A": [("A", "192.0.2.7", 0)],
        "AAAA": [("AAAA", "2001:db8::7", 0)],
        "MX": [],
    }


def test_what_is_not_a_query_is_never_answered_here() -> None:
    policy = Policy(Names.of(["db.example.com"]), Answer.NXDOMAIN)
    assert policy.decide(b"\x01\x02") == (Verdict.DROP, b"")  # shorter than a header
    assert policy.decide(b"\x00" * 12 + b"\xff")[0] is Verdict.FORWARD  # unparsable
    response = DNSRecord.parse(query("db.example.com")).reply()
    assert policy.decide(bytes(response.pack()))[0] is Verdict.FORWARD


def _exprs(msg: Any) -> list[tuple[str, dict[str, Any]]]:
    attrs = dict(msg["attrs"])
    out = []
    for expr in attrs["NFTA_RULE_EXPRESSIONS"]:
        e = dict(expr["attrs"])
        out.append((e["NFTA_EXPR_NAME"], dict(e["NFTA_EXPR_DATA"]["attrs"])))
    return out


def test_each_resolver_is_redirected_to_its_port_except_the_answerers_own_queries() -> None:
    resolvers = (ipaddress.ip_network("10.0.0.53/32"), ipaddress.ip_network("fd00::53/128"))
    msgs = redirect_messages("brownout_t", resolvers, [40001, 40002], "fault-1")
    chain = dict(msgs[1]["attrs"])
    assert chain["NFTA_CHAIN_TYPE"] == "nat"
    assert dict(chain["NFTA_CHAIN_HOOK"]["attrs"])["NFTA_HOOK_PRIORITY"] == -100
    rules = [_exprs(m) for m in msgs[2:]]
    assert len(rules) == 4  # two resolvers, UDP and TCP
    for rule, port in zip(rules, [40001, 40001, 40002, 40002], strict=True):
        names = [name for name, _ in rule]
        assert names[:2] == ["meta", "cmp"] and names[-2:] == ["immediate", "redir"]
        mark = rule[1][1]
        assert mark["NFTA_CMP_OP"] == 1  # not equal
        assert dict(mark["NFTA_CMP_DATA"]["attrs"])["NFTA_DATA_VALUE"] == struct.pack(
            "=I", ANSWERER_MARK
        )
        loaded = dict(rule[-2][1]["NFTA_IMMEDIATE_DATA"]["attrs"])["NFTA_DATA_VALUE"]
        assert loaded == struct.pack(">H", port)
    for m in msgs:
        m.encode()  # pyroute2 can put every message on the wire
