"""`brownout certs init DIR`: a throwaway PKI for trying mutual TLS.

Makes a CA, an agent certificate with the node's DNS and IP SANs, and a
controller certificate whose identity is a SAN URI. Production should use
cert-manager or an existing PKI instead (docs/security.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONTROLLER_IDENTITY = "spiffe://brownout/controller"
VIEWER_IDENTITY = "spiffe://brownout/viewer"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca(name: str = "Brownout test CA", days: int = 365) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    ca: Authority,
    common_name: str,
    *,
    dns: list[str] | None = None,
    ips: list[IPAddress] | None = None,
    uris: list[str] | None = None,
    server: bool = False,
    client: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
    sans += [x509.IPAddress(ip) for ip in ips or []]
    sans += [x509.UniformResourceIdentifier(u) for u in uris or []]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def node_names() -> tuple[list[str], list[IPAddress]]:
    """This node's DNS names and IP addresses, plus loopback."""
    fqdn = socket.getfqdn()
    host = socket.gethostname()
    dns = sorted({host, fqdn, "localhost"})
    ips: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        for info in socket.getaddrinfo(host, None):
            ips.add(ipaddress.ip_address(info[4][0]))
    except OSError:
        pass
    return dns, sorted(ips, key=lambda ip: (ip.version, int(ip)))


def _write(path: Path, data: bytes, secret: bool) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600 if secret else 0o644)


def init(
    directory: Path, dns: list[str] | None = None, ips: list[IPAddress] | None = None
) -> dict[str, Path]:
    """Write ca.pem, agent.pem/agent-key.pem, controller.pem/controller-key.pem,
    viewer.pem/viewer-key.pem. Refuses to overwrite an existing CA key."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca-key.pem").exists():
        raise FileExistsError(f"{directory}/ca-key.pem exists; refusing to overwrite a CA")
    node_dns, node_ips = node_names()
    ca = new_ca()
    agent = issue(
        ca, node_dns[0], dns=dns or node_dns, ips=ips or node_ips, server=True, client=True
    )
    controller = issue(ca, "brownout-controller", uris=[CONTROLLER_IDENTITY], client=True)
    viewer = issue(ca, "brownout-viewer", uris=[VIEWER_IDENTITY], client=True)
    files = {
        "ca": directory / "ca.pem",
        "ca_key": directory / "ca-key.pem",
        "agent": directory / "agent.pem",
        "agent_key": directory / "agent-key.pem",
        "controller": directory / "controller.pem",
        "controller_key": directory / "controller-key.pem",
        "viewer": directory / "viewer.pem",
        "viewer_key": directory / "viewer-key.pem",
    }
    _write(files["ca"], ca.cert_pem, secret=False)
    _write(files["ca_key"], ca.key_pem, secret=True)
    for name, issued in (("agent", agent), ("controller", controller), ("viewer", viewer)):
        _write(files[name], issued.cert_pem, secret=False)
        _write(files[f"{name}_key"], issued.key_pem, secret=True)
    return files
