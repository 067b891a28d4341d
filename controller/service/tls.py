"""Mutual TLS for `brownout serve`, with the agents' model: a client
certificate signed by the given CA identifies the caller by its SANs (URI,
DNS) and CN, and an allowlist maps identities to roles (by default the
identities `brownout certs init` issues: spiffe://brownout/controller is an
operator, spiffe://brownout/viewer a viewer). Certificates are optional at the
handshake, so bearer tokens keep working; a certificate that is presented
must verify.

uvicorn does not put the peer certificate in the ASGI scope, so a small
subclass of its h11 protocol reads it once per connection and passes the
identities in the scope's state (request.state.peer_identities)."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from controller.service.auth import Role


@dataclass(frozen=True)
class CertRoles:
    operators: frozenset[str]
    viewers: frozenset[str]

    def role_of(self, identities: Iterable[str]) -> tuple[str, Role] | None:
        """The first identity on a list, with its role; operators first."""
        ids = list(identities)
        for allowed, role in ((self.operators, Role.OPERATOR), (self.viewers, Role.VIEWER)):
            for identity in ids:
                if identity in allowed:
                    return identity, role
        return None


def identities(cert: dict[str, Any] | None) -> list[str]:
    """SANs (URI, DNS, IP) then CN of a verified peer certificate (ssl.getpeercert())."""
    if not cert:
        return []
    out = [str(v) for k, v in cert.get("subjectAltName", ()) if k in ("URI", "DNS", "IP Address")]
    for rdn in cert.get("subject", ()):
        out += [str(v) for k, v in rdn if k == "commonName"]
    return list(dict.fromkeys(out))


class PeerCertH11(H11Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        # Per connection: the server's state dict is shared, so copy it.
        self.app_state = {**self.app_state, "peer_identities": identities(peer)}


def uvicorn_options(cert: Path | None, key: Path | None, client_ca: Path | None) -> dict[str, Any]:
    """uvicorn.Config's TLS arguments."""
    if cert is None or key is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if client_ca is not None:
        options.update(
            ssl_ca_certs=str(client_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL, http=PeerCertH11
        )
    return options
