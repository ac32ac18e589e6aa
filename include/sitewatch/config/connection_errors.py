"""Why a TLS connection to Kafka or PostgreSQL failed, in one short sentence.

librdkafka reports a failed handshake only through its error callback and its log, and then the
produce simply times out; its text for every server-certificate problem is the same "certificate
verify failed". So the Kafka hooks install a ``ClientErrors`` recorder as ``error_cb``, and when a
publish or a drain fails, ``ClientErrors.cause()`` turns what was recorded into one of the causes
below. A failed server verification is explained by one handshake of our own against the same
address with the same CA file, which tells an expired certificate, a wrong host and a wrong CA
apart. PostgreSQL's libpq texts are specific already except for the same verify failure, which
``postgres_cause`` explains the same way.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import ssl
import struct
from collections import deque

from cryptography import x509

from sitewatch.errors import ConnectionConfigError

UNTRUSTED = "TLS: broker certificate not trusted (wrong CA?)"
REFUSED = "TLS: broker refused our client certificate (missing or not signed by its CA)"
EXPIRED = "TLS: certificate expired"
HOSTNAME = "TLS: broker hostname does not match its certificate"
BAD_KEY = "TLS: the client key could not be read (wrong ssl.key.password?)"
SASL = "SASL: the broker rejected the username or password"

# librdkafka settings that name a file; each must exist and be readable before a client is built.
FILE_SETTINGS = (
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
)
# TLS alerts a server sends when it rejects the client's certificate (or its absence).
_REFUSAL = re.compile(
    r"alert (bad certificate|certificate unknown|certificate expired|unknown ca|"
    r"certificate required|certificate revoked|unsupported certificate|access denied)"
)
_BROKER = re.compile(r"\bssl://([^/\s]+):(\d+)/")
# librdkafka's suffix on a transport error, which differs between two reports of one failure:
# " (after 0ms in state CONNECT)", " (after 10001ms in state UP, 2 identical error(s) suppressed)"
_TIMING = re.compile(r" \(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)")
_PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def check_files(config: dict, conn_id: str) -> None:
    """Raise ConnectionConfigError when a file the Kafka config names is missing or unreadable."""
    for key in FILE_SETTINGS:
        path = config.get(key)
        if not path or (key == "ssl.ca.location" and path == "probe"):
            continue
        if not os.path.exists(path):
            raise ConnectionConfigError(f"{conn_id}: {key} {path} does not exist")
        if not os.access(path, os.R_OK):
            raise ConnectionConfigError(f"{conn_id}: {key} {path} is not readable by this user")


class ClientErrors:
    """An ``error_cb`` for a librdkafka client that keeps its recent errors to explain a failure,
    without librdkafka's timing suffix, so that one failure reads the same every time.

    config: the client's configuration (only its TLS file paths are kept). chained: an
    ``error_cb`` the connection configured itself, still called for every error.
    """

    def __init__(self, config: dict, chained=None):
        self.ca = config.get("ssl.ca.location")
        self.cert = config.get("ssl.certificate.location")
        self.check_hostname = config.get("ssl.endpoint.identification.algorithm", "https") != "none"
        self.errors: deque[str] = deque(maxlen=20)
        self._chained = chained

    def __call__(self, err) -> None:
        self.errors.append(_TIMING.sub("", err.str()))
        if self._chained is not None:
            self._chained(err)

    def clear(self) -> None:
        self.errors.clear()

    def last(self) -> str | None:
        """The latest error that names a broker (``all brokers down`` says nothing new)."""
        named = [e for e in self.errors if "brokers are down" not in e]
        return (named or list(self.errors) or [None])[-1]

    def cause(self) -> str | None:
        """The short cause of the recorded errors, or None when none of them is recognised."""
        for text in reversed(self.errors):
            if "certificate verify failed" in text:
                broker = _BROKER.search(text)
                if broker is None:
                    return UNTRUSTED
                host, port = broker.group(1), int(broker.group(2))
                return diagnose(host, port, self.ca, check_hostname=self.check_hostname)
            if _REFUSAL.search(text):
                return _own_cert_expired(self.cert) or REFUSED
            if "SASL authentication error" in text or "Authentication failed" in text:
                return SASL
        return None

    def explain(self, *, recognised_only: bool = False) -> str:
        """``cause (client error: last error)``, or just the last error, or an empty string.

        recognised_only: an empty string unless a cause was recognised.
        """
        cause, last = self.cause(), self.last()
        if recognised_only and not cause:
            return ""
        if cause and last:
            return f"{cause} (client error: {last})"
        return cause or last or ""


def diagnose(
    host: str, port: int, cafile: str | None, *, check_hostname=True, address=None, postgres=False
):
    """Handshake with ``host:port`` verifying against ``cafile``; the cause of the failure.

    address: connect there instead of ``host`` (libpq's hostaddr); the name checked is ``host``.
    postgres: send PostgreSQL's SSLRequest first. Returns UNTRUSTED when the server cannot be
    reached again or verifies fine here (librdkafka saw a failure, the CA is the likeliest).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = check_hostname
    if cafile and cafile != "probe":
        context.load_verify_locations(cafile)
    else:
        context.load_default_certs()
    try:
        with socket.create_connection((address or host, port), timeout=5) as sock:
            if postgres:
                sock.sendall(_PG_SSL_REQUEST)
                if sock.recv(1) != b"S":
                    return UNTRUSTED
            with context.wrap_socket(sock, server_hostname=host):
                pass
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return f"{EXPIRED} (the server's: {exc.verify_message})"
        if exc.verify_code in (62, 64):  # hostname / IP address mismatch
            return f"{HOSTNAME} ({exc.verify_message})"
        return f"{UNTRUSTED} ({exc.verify_message})"
    except (OSError, ssl.SSLError):
        pass
    return UNTRUSTED


def kafka_build_cause(exc: Exception) -> str | None:
    """The cause of librdkafka refusing to create a client, when it is a known one."""
    if "ssl.key.location failed" in str(exc):
        return BAD_KEY
    return None


def postgres_cause(text: str, *, host, port, sslrootcert=None, hostaddr=None) -> str | None:
    """The cause of a failed PostgreSQL connection when libpq's ``text`` leaves it open, or None.

    libpq already names a hostname mismatch, a missing root certificate and a wrong password;
    only "certificate verify failed" is explained here, by a handshake of our own.
    """
    if "certificate verify failed" not in text or not host or not port:
        return None
    cause = diagnose(host, int(port), sslrootcert, address=hostaddr, postgres=True)
    return cause.replace("broker", "server")


def explain_postgres(conn, exc: Exception) -> str:
    """libpq's text of ``exc``, preceded by the TLS cause when libpq leaves it open.

    conn: the Airflow connection the hook used (host, port, ``sslrootcert``/``hostaddr`` extras).
    """
    extra = conn.extra_dejson
    cause = postgres_cause(
        str(exc),
        host=conn.host,
        port=conn.port or 5432,
        sslrootcert=extra.get("sslrootcert"),
        hostaddr=extra.get("hostaddr"),
    )
    return f"{cause}: {exc}" if cause else str(exc)


def _own_cert_expired(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        return f"{EXPIRED} (ours: {path} expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
    return None
