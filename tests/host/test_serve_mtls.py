"""`brownout serve` with mutual TLS: the role comes from the client
certificate (the identities `brownout certs init` issues), tokens still work,
a certificate from another CA is refused at the handshake, and the audit line
names the certificate's identity."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from controller.cli import certs
from tests.agentproc import AgentProc
from tests.host.serveproc import OPERATOR, ServeProc

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


def call(
    url: str, ca: Path, cert: tuple[Path, Path] | None, method: str = "GET", body: Any = None,
    token: str | None = None,
) -> tuple[int, Any]:  # fmt: skip
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_client_certificates_carry_roles_and_tokens_still_work(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    pki = certs.init(tmp_path / "pki", dns=["localhost"])
    other = certs.init(tmp_path / "other", dns=["localhost"])
    extra = ["--tls-server-cert", str(pki["agent"]), "--tls-server-key", str(pki["agent_key"]),
             "--tls-client-ca", str(pki["ca"])]  # fmt: skip
    s = ServeProc(tmp_path / "data", fleet, extra=extra).start()
    try:
        base, ca = f"https://localhost:{s.port}/api/v1", pki["ca"]
        operator = (pki["controller"], pki["controller_key"])
        viewer = (pki["viewer"], pki["viewer_key"])
        doc = {
            "title": "t",
            "method": [
                {"type": "probe", "name": "p", "provider": {"type": "process", "path": "true"}}
            ],
        }
        assert call(f"{base}/fleet", ca, viewer)[0] == 200
        status, body = call(f"{base}/experiments/x", ca, viewer, "PUT", {"experiment": doc})
        assert status == 403 and "spiffe://brownout/viewer" in body["error"]
        assert call(f"{base}/experiments/x", ca, operator, "PUT", {"experiment": doc})[0] == 200
        assert call(f"{base}/fleet", ca, None)[0] == 401
        assert call(f"{base}/experiments/x", ca, None, "DELETE", token=OPERATOR)[0] == 200
        # Refused in the handshake: under TLS 1.3 the client may see the server's
        # alert during the handshake (an SSL error) or as the connection closing
        # on its first read, depending on timing; never an HTTP answer.
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            call(f"{base}/fleet", ca, (other["controller"], other["controller_key"]))
        audits = [json.loads(line) for line in s.logs().splitlines()
                  if line.startswith("{") and '"audit"' in line]  # fmt: skip
        callers = [(a["caller"], a["method"], a["result"]) for a in audits]
        assert ("cert:spiffe://brownout/controller", "PUT", 200) in callers
        assert ("cert:spiffe://brownout/viewer", "PUT", 403) in callers
        assert ("token:alice", "DELETE", 200) in callers
    finally:
        assert s.stop() == 0
