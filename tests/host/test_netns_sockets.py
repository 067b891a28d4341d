"""Pooled netlink sockets: reused while warm, never across a vanished
namespace, and closed soon after use so a container's namespace is not kept
alive by the agent."""

from __future__ import annotations

import errno
import secrets

import pytest

from agent.faults import targets
from agent.kernel.errors import Gone
from agent.kernel.net import client, netns, nlsock
from agent.kernel.net.nlsock import NetlinkFailure
from agent.kernel.net.rtnl import NETLINK_ROUTE, Rtnl
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import wait_for
from tests.host.nethosts import run

pytestmark = pytest.mark.host


def test_sockets_are_reused_then_closed_and_never_outlive_their_namespace() -> None:
    name = f"bo{secrets.token_hex(3)}s"
    run("ip", "netns", "add", name)
    try:
        ref = targets.network(pb.Target(netns_name=name))
        with client.borrow(ref, NETLINK_ROUTE) as first:
            assert not ref.own
        with client.borrow(ref, NETLINK_ROUTE) as again:
            assert again is first  # warm: no new thread, no new socket
        with Rtnl.open(ref) as rt:  # and it really talks to that namespace
            assert set(rt.links().values()) == {"lo"}
        # Idle sockets of another namespace are closed within IDLE_OTHER (+ a reaper tick).
        assert wait_for(lambda: first.closed, client.SocketPool.IDLE_OTHER + 2.0, 0.05)
        with client.borrow(ref, NETLINK_ROUTE) as fresh:
            assert fresh is not first
    finally:
        run("ip", "netns", "del", name)
    # Gone by name: borrowing says so, and closes what it pooled for it.
    with pytest.raises(Gone), client.borrow(ref, NETLINK_ROUTE):
        pass
    assert fresh.closed


def test_a_broken_socket_is_closed_not_given_back() -> None:
    ref = netns.own()
    with client.borrow(ref, NETLINK_ROUTE) as nl:
        nl.broken = True
    assert nl.closed
    with client.borrow(ref, NETLINK_ROUTE) as other:
        assert other is not nl


def test_a_reply_larger_than_the_buffer_is_an_error_not_a_silent_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nlsock, "RECV_BUFFER", 64)  # smaller than one link message
    with nlsock.NlSocket(nlsock.new_socket(NETLINK_ROUTE)) as nl:
        with pytest.raises(NetlinkFailure) as err:
            Rtnl(nl).links()
        assert err.value.errno == errno.EMSGSIZE and nl.broken
