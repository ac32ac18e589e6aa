"""Certificate chains for the TLS tests, made with ``cryptography``: a root, an intermediate and a
leaf, each valid for as long as the test needs (trustme cannot date an intermediate), and the
server context that presents them."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.now(UTC).replace(microsecond=0)
_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass
class Chain:
    """A chain on disk: ``ca`` (the root's PEM, to trust), ``served`` (leaf then intermediate,
    and ``extra`` after them), ``key`` (the leaf's), and each certificate's notAfter."""

    ca: str
    served: str
    key: str
    root_not_after: datetime
    intermediate_not_after: datetime
    leaf_not_after: datetime

    def context(self, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A server context presenting the chain, at most TLS ``maximum``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.served, self.key)
        if maximum is not None:
            context.maximum_version = maximum
        return context


def make_chain(
    folder: Path,
    *,
    intermediate_days: float = 365,
    leaf_days: float = 90,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    extra: tuple[x509.Certificate, ...] = (),
) -> Chain:
    """Write a root (10 years), an intermediate and a leaf for ``hosts`` into ``folder``; a
    negative number of days makes a certificate that expired that long ago. ``extra``
    certificates are served after the intermediate."""
    root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = certificate("Sitewatch Test Root", root_key, "Sitewatch Test Root", root_key, 3650)
    middle = certificate(
        "Sitewatch Test Intermediate", middle_key, "Sitewatch Test Root", root_key,
        intermediate_days,
    )  # fmt: skip
    leaf = certificate(
        hosts[0], leaf_key, "Sitewatch Test Intermediate", middle_key, leaf_days, hosts=hosts
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(_pem(root))
    (folder / "served.pem").write_bytes(b"".join(_pem(c) for c in (leaf, middle, *extra)))
    (folder / "key.pem").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Chain(
        str(folder / "ca.pem"),
        str(folder / "served.pem"),
        str(folder / "key.pem"),
        root.not_valid_after_utc,
        middle.not_valid_after_utc,
        leaf.not_valid_after_utc,
    )


def certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: float,
    *,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    """A certificate for ``name`` signed by ``issuer``, valid from 60 days ago for ``days`` from
    now; a CA unless it has ``hosts``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=60))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=not hosts, path_length=None), critical=True)
    )
    if hosts:
        names = [_general_name(host) for host in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    else:
        builder = builder.add_extension(_CA_USAGE, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
