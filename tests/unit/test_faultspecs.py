"""An experiment's `arguments:` mapping and `brownout inject`'s flags build the
same specs through one table, and a bad mapping is refused naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from brownout import faultspecs
from brownout.v1 import agent_pb2 as pb
from controller.cli import faultflags
from controller.cli import main as cli
from controller.errors import ConfigError

pytestmark = pytest.mark.unit

# (flags, the same as a mapping)
SAME: list[tuple[list[str], dict[str, Any]]] = [
    (["cpu", "--cores", "2", "--load", "50", "--pid", "7"], {"cores": 2, "load": 50, "pid": 7}),
    (["cpu", "--core-list", "0,2-3", "--load", "20%"], {"core-list": "0,2-3", "load": "20%"}),
    (["memory", "--size", "1GiB", "--rate", "256MiB/s", "--cgroup", "/app"],
     {"size": "1GiB", "rate": "256MiB/s", "cgroup": "/app"}),
    (["disk", "--path", "/var", "--fill", "90%", "--allow-full"],
     {"path": "/var", "fill": "90%", "allow_full": True}),
    (["io", "--path", "/var", "--mode", "mixed", "--block-size", "64KiB", "--direct"],
     {"path": "/var", "mode": "mixed", "block-size": "64KiB", "direct": True}),
    (["netem", "--delay", "50ms", "--loss", "1%", "--port", "80", "--port", "8000-8100",
      "--to", "10.0.0.0/24", "--protocol", "tcp", "--netns", "web1"],
     {"delay": "50ms", "loss": 1, "port": [80, "8000-8100"], "to": "10.0.0.0/24",
      "protocol": "tcp", "netns": "web1"}),
    (["bandwidth", "--rate", "10mbit", "--latency", "20ms", "--interface", "eth0"],
     {"rate": "10mbit", "latency": "20ms", "interface": "eth0"}),
    (["partition", "--to", "10.0.0.5", "--to", "10.0.1.0/24", "--direction", "ingress",
      "--netns", "/proc/7/ns/net"],
     {"to": ["10.0.0.5", "10.0.1.0/24"], "direction": "ingress", "netns": "/proc/7/ns/net"}),
    (["process", "--action", "kill", "--cmdline", "worker", "--count", "2", "--order", "newest",
      "--signal", "TERM", "--interval", "30s", "--children", "--cgroup", "/app"],
     {"action": "kill", "cmdline": "worker", "count": 2, "order": "newest", "signal": "TERM",
      "interval": "30s", "children": True, "cgroup": "/app"}),
    (["process", "--action", "stop", "--comm", "nginx", "--percent", "50%", "--allow-many"],
     {"action": "stop", "comm": "nginx", "percent": "50%", "allow_many": True}),
    (["pause", "--cgroup", "/app", "--allow-denylisted"],
     {"cgroup": "/app", "allow_denylisted": True}),
    (["dns", "--resolver", "10.0.0.53", "--resolver", "fd00::53/128", "--netns", "web1"],
     {"resolver": ["10.0.0.53", "fd00::53/128"], "netns": "web1"}),
    (["dns", "--name", "db.example.com", "--name", "*.cache.internal", "--answer", "spoof",
      "--spoof", "192.0.2.9", "--spoof", "2001:db8::9", "--pid", "42"],
     {"name": ["db.example.com", "*.cache.internal"], "answer": "spoof",
      "spoof": ["192.0.2.9", "2001:db8::9"], "pid": 42}),
    (["clock", "--offset=-5m"], {"offset": "-5m"}),
    (["cpu", "--cores", "1", "--load", "50", "--container", "web-1"],
     {"cores": 1, "load": 50, "container": "web-1"}),
    (["partition", "--to", "10.0.0.5", "--container", "0123456789ab"],
     {"to": "10.0.0.5", "container": "0123456789ab"}),
    (["process", "--action", "stop", "--comm", "nginx", "--container", "web-1"],
     {"action": "stop", "comm": "nginx", "container": "web-1"}),
    (["pause", "--container", "web-1"], {"container": "web-1"}),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "mapping"), SAME, ids=[a[0] for a, _ in SAME])
def test_flags_and_mapping_build_the_same_spec(argv: list[str], mapping: dict[str, Any]) -> None:
    args = cli.build_parser().parse_args(["inject", *argv, "--duration", "10s"])
    from_flags = faultflags.build(args)
    kind = faultspecs.by_name(argv[0])
    from_mapping = kind.build(faultspecs.from_mapping(kind, mapping, "arguments"))
    assert from_flags == from_mapping
    assert from_flags[0] != pb.FaultSpec()


def test_a_list_of_peers_becomes_every_peer() -> None:
    kind = faultspecs.by_name("partition")
    spec, _ = kind.build(faultspecs.from_mapping(kind, {"to": ["10.0.0.5", "::1"]}, "a"))
    assert list(spec.partition.peers) == ["10.0.0.5", "::1"]


@pytest.mark.parametrize(
    ("kind", "mapping", "where", "message"),
    [
        ("cpu", {"cores": 1}, "a.load", "is required"),
        ("cpu", {"load": 5}, "a", "one of cores or core-list is required"),
        ("cpu", {"cores": 1, "core_list": [0], "load": 5}, "a", "give only one of cores"),
        ("cpu", {"cores": 1, "load": 5, "colour": "red"}, "a.colour", "unknown argument"),
        ("cpu", {"cores": 0, "load": 5}, "a.cores", "between 1 and 4096"),
        ("cpu", {"cores": True, "load": 5}, "a.cores", "expected a value"),
        ("cpu", {"cores": 1, "load": 5, "load-": 1}, "a.load-", "unknown argument"),
        ("cpu", {"cores": 1, "load": 5, "core-list": None, "core_list": None}, "a.core_list",
         "given twice"),
        ("disk", {"path": "/v", "fill": "90%", "allow-full": "yes"}, "a.allow-full",
         "true or false"),
        ("io", {"path": "/v", "mode": "sideways"}, "a.mode", "read, write"),
        ("netem", {"delay": "soon"}, "a.delay", "invalid duration"),
        ("netem", {"to": ["10.0.0.1", "nope"]}, "a.to[1]", "not an IP address"),
        ("netem", {"rate": "10mbps"}, "a.rate", "invalid rate"),
        ("netem", {"interface": "a/b"}, "a.interface", "not an interface name"),
        ("bandwidth", {"rate": "0"}, "a.rate", "more than 0"),
        ("partition", {"direction": "both"}, "a.to", "is required"),
        ("partition", {"to": {"a": 1}}, "a.to[0]", "expected a value"),
        ("process", {"comm": "x"}, "a.action", "is required"),
        ("process", {"action": "pause"}, "a.action", "kill, stop"),
        ("process", {"action": "kill", "signal": "NOPE"}, "a.signal", "not a signal name"),
        ("process", {"action": "kill", "count": 1, "percent": 5}, "a", "give only one of count"),
        ("pause", {}, "a", "one of cgroup, pid or container is required"),
    ],
)  # fmt: skip
def test_bad_mapping_names_the_key(kind: str, mapping: dict[str, Any], where: str,
                                   message: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as err:
        faultspecs.from_mapping(faultspecs.by_name(kind), mapping, "a")
    assert err.value.where == where
    assert message in err.value.message


def test_every_option_is_a_flag_and_a_key() -> None:
    parser = cli.build_parser()
    for kind in faultspecs.KINDS:
        for option in kind.options:
            assert option.name.isidentifier() and option.name == option.name.lower()
            assert option.switch or option.parse is not None or option.choices
        # Every option reaches the kind's build without a KeyError.
        values = {o.name: o.absent() for o in kind.options}
        assert set(values) == {o.name for o in kind.options}
    help_text = parser.parse_known_args(["inject", "cpu", "--load", "1", "--cores", "1",
                                         "--duration", "1s"])  # fmt: skip
    assert help_text[0].kind == "cpu"
