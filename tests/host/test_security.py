"""Mutual TLS and roles on a real agent, with real certificates."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from controller.cli import certs
from tests.agentclient import AgentClient
from tests.agentproc import AgentProc
from tests.pki import Pki

pytestmark = pytest.mark.host

OPERATOR = certs.CONTROLLER_IDENTITY
VIEWER = certs.VIEWER_IDENTITY


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def tls_agent(tmp_path: Path, pki: Pki, agent_factory: list[AgentProc]) -> AgentProc:
    a = AgentProc(
        tmp_path / "state",
        [*pki.agent_args(), "--operators", OPERATOR, "--viewers", VIEWER],
    ).start()
    agent_factory.append(a)
    return a


def call_code(client: AgentClient, fn: str = "info") -> grpc.StatusCode:
    try:
        getattr(client, fn)()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_operator_can_do_everything(tls_agent: AgentProc, pki: Pki) -> None:
    tls = pki.client("controller", uris=[OPERATOR])
    with AgentClient(tls_agent.address, timeout=5, tls=tls) as c:
        assert c.info().version
        lease = c.acquire_lease("ctl", 10)
        fault = c.inject(lease.lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=10)), 30)
        assert fault.state == pb.FAULT_STATE_ACTIVE
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        c.release_lease(lease.lease_id)
    audits = [e for e in tls_agent.log_events() if e.get("event") == "audit"]
    assert audits and {e["caller"] for e in audits} == {OPERATOR}


def test_viewer_reads_but_cannot_act(tls_agent: AgentProc, pki: Pki) -> None:
    tls = pki.client("viewer", uris=[VIEWER])
    with AgentClient(tls_agent.address, timeout=5, tls=tls) as c:
        assert c.info().version
        assert c.list_faults() == []
        with pytest.raises(grpc.RpcError) as err:
            c.acquire_lease("viewer", 10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs the operator role" in (err.value.details() or "")
        with pytest.raises(grpc.RpcError) as err:
            c.inject("lease-x", pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=10)), 5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    denied = [
        (e["method"], e["caller"])
        for e in tls_agent.log_events()
        if e.get("event") == "audit" and e.get("result") == "PERMISSION_DENIED"
    ]
    assert denied == [("AcquireLease", VIEWER), ("InjectFault", VIEWER)]


def test_certificate_outside_the_allowlist_is_denied(tls_agent: AgentProc, pki: Pki) -> None:
    tls = pki.client("stranger", uris=["spiffe://brownout/stranger"])
    with AgentClient(tls_agent.address, timeout=5, tls=tls) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.info()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not in this agent's allowlist" in (err.value.details() or "")


def test_no_certificate_fails_the_handshake(tls_agent: AgentProc, pki: Pki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=(pki.root / "ca.pem").read_bytes())
    with grpc.secure_channel(tls_agent.address, creds) as ch:
        from brownout.v1 import agent_pb2_grpc

        with pytest.raises(grpc.RpcError) as err:
            agent_pb2_grpc.AgentStub(ch).GetInfo(pb.GetInfoRequest(), timeout=5)
        assert err.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNAUTHENTICATED,
        )


def test_plaintext_client_is_refused(tls_agent: AgentProc) -> None:
    with AgentClient(tls_agent.address, timeout=5) as c:
        assert call_code(c) == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_fails(tls_agent: AgentProc, pki: Pki) -> None:
    other = certs.new_ca("another CA")
    tls = pki.client("impostor", ca=other, uris=[OPERATOR])
    with AgentClient(tls_agent.address, timeout=5, tls=tls) as c:
        assert call_code(c) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_expired_certificate_fails(tls_agent: AgentProc, pki: Pki) -> None:
    now = dt.datetime.now(dt.UTC)
    tls = pki.client(
        "expired",
        uris=[OPERATOR],
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    with AgentClient(tls_agent.address, timeout=5, tls=tls) as c:
        assert call_code(c) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_the_handshake_is_tls13(tls_agent: AgentProc, pki: Pki) -> None:
    tls = pki.client("controller", uris=[OPERATOR])
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", tls_agent.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        assert s.version() == "TLSv1.3"
        assert s.selected_alpn_protocol() == "h2"


def run_agent(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--state-dir", str(tmp_path / "s"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_plaintext_on_a_remote_address_refuses_to_start(tmp_path: Path) -> None:
    out = run_agent(tmp_path, "--listen", "0.0.0.0:0", "--metrics-listen", "")
    assert out.returncode == 2
    assert "refusing to serve plaintext gRPC on 0.0.0.0:0" in out.stderr
    assert "--tls-cert" in out.stderr and "--insecure-allow-remote" in out.stderr
    assert not (tmp_path / "s" / "journal").exists()  # refused before touching anything


def test_partial_tls_flags_refuse_to_start(tmp_path: Path, pki: Pki) -> None:
    out = run_agent(tmp_path, "--tls-cert", str(pki.root / "agent.pem"), "--metrics-listen", "")
    assert out.returncode == 2 and "needs all of --tls-cert, --tls-key" in out.stderr


def test_insecure_allow_remote_starts_with_a_warning(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state", ["--insecure-allow-remote"])
    a.extra_args += ["--listen", "0.0.0.0:0"]
    a.start()
    agent_factory.append(a)
    warnings = [e for e in a.log_events() if "non-loopback" in str(e.get("event"))]
    assert warnings and warnings[0]["level"] == "warning"


def test_certs_init_makes_a_working_pki(tmp_path: Path, agent_factory: list[AgentProc]) -> None:
    d = tmp_path / "pki"
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "certs", "init", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (d / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    a = AgentProc(
        tmp_path / "state",
        [
            "--tls-cert",
            str(d / "agent.pem"),
            "--tls-key",
            str(d / "agent-key.pem"),
            "--tls-client-ca",
            str(d / "ca.pem"),
            "--operators",
            OPERATOR,
        ],
    ).start()
    agent_factory.append(a)
    tls_flags = ["--tls-ca", str(d / "ca.pem"), "--tls-cert", str(d / "controller.pem")]
    tls_flags += ["--tls-key", str(d / "controller-key.pem")]
    info = subprocess.run(
        [sys.executable, "-m", "controller.cli", "--agent", a.address, *tls_flags, "info"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.returncode == 0, info.stderr
    assert "cpu" in info.stdout and "available" in info.stdout
    again = subprocess.run(
        [sys.executable, "-m", "controller.cli", "certs", "init", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "refusing to overwrite a CA" in again.stderr
