"""The controller's side of mutual TLS: CA to trust, its own cert and key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ClientTls:
    ca: Path
    cert: Path
    key: Path
    # Expected name in the agent's certificate, when it differs from the
    # host part of the address (e.g. dialling an IP of a node named by DNS).
    server_name: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _env_file(name: str) -> str | None:
    """A BROWNOUT_TLS_* file from the environment, which must be readable."""
    if name not in os.environ:
        return None
    value = os.environ[name]
    if not value.strip():
        raise ValueError(f"{name} '': is empty: give a file path, or unset it")
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ValueError(f"{name} {value!r}: does not exist or is not a readable file")
    return value


def from_values(
    ca: str | Path | None, cert: str | Path | None, key: str | Path | None, server_name: str = ""
) -> ClientTls | None:
    """ClientTls from flags (falling back to BROWNOUT_TLS_* env), or None for plaintext."""
    ca = ca or _env_file("BROWNOUT_TLS_CA")
    cert = cert or _env_file("BROWNOUT_TLS_CERT")
    key = key or _env_file("BROWNOUT_TLS_KEY")
    server_name = server_name or os.environ.get("BROWNOUT_TLS_SERVER_NAME", "")
    given = [v for v in (ca, cert, key) if v]
    if not given:
        return None
    if len(given) != 3:
        raise ValueError("mutual TLS needs all of --tls-ca, --tls-cert and --tls-key")
    assert ca and cert and key
    return ClientTls(Path(ca), Path(cert), Path(key), server_name)
