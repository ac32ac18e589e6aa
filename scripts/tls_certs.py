"""Certificates for the local stack's TLS mode: a CA, a server certificate, a client certificate.

Usage: tls_certs.py DIR   (writes only the files that are missing, so rerunning keeps them)

DIR receives the same three files Aiven hands out, plus the server's side:

  ca.pem, ca.key            the CA that signs everything below (ca.key never leaves DIR)
  server.cert, server.key   the broker's and PostgreSQL's certificate, for localhost and 127.0.0.1
  server.pem                server.key followed by server.cert: Kafka's PEM key store
  service.cert, service.key the client certificate and key (Aiven's names)

Tests import this file for ``make_ca`` and ``issue`` to make deliberately bad certificates
(expired, for another host, from another CA, with an encrypted key).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)
SERVER_NAMES = ("localhost", "127.0.0.1")


def make_ca(name: str = "sitewatch local CA"):
    """A self-signed CA valid for ten years; returns ``(certificate, private_key)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(ca, common_name: str, names=(), *, client: bool = False, expired: bool = False):
    """A leaf certificate signed by ``ca`` (a ``(cert, key)`` pair); returns ``(cert, key)``.

    names: DNS names and IP addresses for the subjectAltName (servers). client: for client
    authentication instead of server authentication. expired: validity ended yesterday.
    """
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (now - 30 * DAY, now - DAY) if expired else (now - DAY, now + 825 * DAY)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, password: str | None = None) -> bytes:
    """PKCS#8 PEM (what both librdkafka and Kafka's PEM key store read), encrypted if asked."""
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write ``data``; a secret (a private key) is created readable by its owner only."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_ca(directory: Path):
    cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    return cert, key


def init(directory: Path) -> None:
    """Create the CA, server and client files in ``directory`` unless they already exist."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "ca.pem").exists():
        ca = make_ca()
        write(directory / "ca.key", key_pem(ca[1]), secret=True)
        write(directory / "ca.pem", cert_pem(ca[0]))
    ca = load_ca(directory)
    if not (directory / "server.pem").exists():
        cert, key = issue(ca, "localhost", SERVER_NAMES)
        write(directory / "server.cert", cert_pem(cert))
        write(directory / "server.key", key_pem(key), secret=True)
        write(directory / "server.pem", key_pem(key) + cert_pem(cert), secret=True)
    if not (directory / "service.key").exists():
        cert, key = issue(ca, "sitewatch", client=True)
        write(directory / "service.cert", cert_pem(cert))
        write(directory / "service.key", key_pem(key), secret=True)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tls_certs.py DIR")
    init(Path(sys.argv[1]))
