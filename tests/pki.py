"""A test certificate authority on disk: the CA, an agent's server
certificate for localhost and 127.0.0.1, and client certificates on demand."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from controller.agents.tls import ClientTls
from controller.cli import certs


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = certs.new_ca()
        self.write("ca.pem", self.ca.cert_pem)
        agent = certs.issue(
            self.ca,
            "agent",
            dns=["localhost"],
            ips=[ipaddress.ip_address("127.0.0.1")],
            server=True,
        )
        self.write("agent.pem", agent.cert_pem)
        self.write("agent-key.pem", agent.key_pem)

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    def client(self, name: str, ca: certs.Authority | None = None, **kw: object) -> ClientTls:
        issued = certs.issue(ca or self.ca, name, client=True, **kw)  # type: ignore[arg-type]
        return ClientTls(
            self.root / "ca.pem",
            self.write(f"{name}.pem", issued.cert_pem),
            self.write(f"{name}-key.pem", issued.key_pem),
        )

    def agent_args(self) -> list[str]:
        """The agent's TLS flags for this CA's agent certificate."""
        return [
            "--tls-cert", str(self.root / "agent.pem"),
            "--tls-key", str(self.root / "agent-key.pem"),
            "--tls-client-ca", str(self.root / "ca.pem"),
        ]  # fmt: skip
