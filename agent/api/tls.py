"""Transport security for the agent's listener.

With --tls-cert/--tls-key/--tls-client-ca the agent serves TLS and requires a
client certificate signed by that CA (mutual TLS). Without them it serves
plaintext, which is allowed on loopback only: listening anywhere else needs
TLS, or an explicit --insecure-allow-remote that is logged at every start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from brownout.addresses import is_loopback


class TlsConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    client_ca: Path

    def credentials(self) -> grpc.ServerCredentials:
        try:
            key, cert, ca = (
                self.key.read_bytes(),
                self.cert.read_bytes(),
                self.client_ca.read_bytes(),
            )
        except OSError as exc:
            raise TlsConfigError(f"cannot read TLS material: {exc}") from exc
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )


def server_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> ServerTls | None:
    given = [p for p in (cert, key, client_ca) if p is not None]
    if not given:
        return None
    if len(given) != 3:
        raise TlsConfigError(
            "TLS needs all of --tls-cert, --tls-key and --tls-client-ca"
            " (the CA that signs client certificates)"
        )
    assert cert is not None and key is not None and client_ca is not None
    return ServerTls(cert, key, client_ca)


def listen_host(listen: str) -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise TlsConfigError(f"listen address {listen!r} must be host:port")
    return host.strip("[]")


def check_plaintext_allowed(listen: str, insecure_allow_remote: bool) -> None:
    """Refuse plaintext on a non-loopback address unless explicitly allowed."""
    if is_loopback(listen_host(listen)) or insecure_allow_remote:
        return
    raise TlsConfigError(
        f"refusing to serve plaintext gRPC on {listen}: anyone who can reach it could inject"
        " faults. Enable mutual TLS with --tls-cert, --tls-key and --tls-client-ca (see"
        " docs/security.md; `brownout certs init DIR` makes a test CA), listen on a loopback"
        " address, or pass --insecure-allow-remote to accept the risk"
    )
