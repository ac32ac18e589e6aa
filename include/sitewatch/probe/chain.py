"""What one TLS connection showed: its certificate chain and the TLS version it agreed on.

Which chain counts. A verified connection reports the path OpenSSL verified (leaf, intermediates,
and the trusted root it ended at): that path is what stops working when one of its certificates
expires. The certificates the server sent can differ: servers long sent Let's Encrypt's expired
cross-signed root beside a valid path, and a monitor reading what was sent called every such site
expired. With ``verify_tls: false`` nothing was verified, so what the server presented is all
there is, and counts. When the handshake fails, the chain the server presented (kept on the
exception by ``RecordingSocket``) says which certificate failed: OpenSSL's own message
("certificate has expired") does not.

Python 3.11 has the chains only on the SSL object (``_sslobj.get_verified_chain`` and
``get_unverified_chain``, public on ``SSLSocket`` from 3.13); they are read here and nowhere else.
"""

from __future__ import annotations

import _ssl
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

PRESENTED = "sitewatch_presented_chain"
"""The attribute of a failed handshake's SSLError holding the presented chain (DER, leaf first)."""
MAX_NAMED_HOSTS = 5  # host names of a certificate quoted in a detail; a CDN's can list hundreds
_NAME_CHARS = 64
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class Certificate:
    """One certificate of a chain. ``name``: its subject's CN (else its first host, else its
    subject). ``role``: leaf (the server's own), intermediate, or root (a self-issued CA).
    ``hosts``: the DNS names and IP addresses of its subjectAltName."""

    name: str
    role: str
    not_before: datetime
    not_after: datetime
    hosts: tuple[str, ...] = ()

    def described(self) -> str:
        """``intermediate 'R3'``: how a detail names it."""
        return f"{self.role} {self.name!r}"


@dataclass(frozen=True, slots=True)
class Handshake:
    """What one TLS connection showed: ``version`` as OpenSSL names it (``TLSv1.3``; None when
    the handshake failed) and its ``chain``, leaf first (see the module's note on which)."""

    version: str | None
    chain: tuple[Certificate, ...]

    def first_to_expire(self) -> Certificate | None:
        """The certificate of the chain whose notAfter comes first (None for an empty chain)."""
        return min(self.chain, key=lambda cert: cert.not_after, default=None)

    @property
    def expires_at(self) -> datetime | None:
        """When the chain stops being valid: its earliest notAfter."""
        first = self.first_to_expire()
        return first.not_after if first else None


class RecordingSocket(ssl.SSLSocket):
    """An SSLSocket whose failed handshake leaves the chain the server presented on the raised
    SSLError, as attribute ``PRESENTED`` (the socket is closed right after, with its chain)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except ssl.SSLError as exc:
            sslobj = self._sslobj
            setattr(exc, PRESENTED, _ders(sslobj.get_unverified_chain() if sslobj else None))
            raise


def recording(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context``, its sockets made ``RecordingSocket``s (the documented ``sslsocket_class``)."""
    context.sslsocket_class = RecordingSocket
    return context


def handshake(sock: ssl.SSLSocket, verified: bool) -> Handshake:
    """What the completed handshake of ``sock`` showed; ``verified``: whether the peer was
    verified (then the verified path is the chain, else what the server presented)."""
    sslobj = sock._sslobj
    chain = sslobj.get_verified_chain() if verified else sslobj.get_unverified_chain()
    return Handshake(sock.version(), certificates(_ders(chain)))


def presented(exc: BaseException) -> Handshake | None:
    """The chain the server presented before the failed handshake that raised ``exc``, or None
    when it presented none (or ``exc`` did not come from a ``RecordingSocket``)."""
    chain = certificates(getattr(exc, PRESENTED, None) or [])
    return Handshake(None, chain) if chain else None


def certificates(ders: list[bytes]) -> tuple[Certificate, ...]:
    """The certificates of a chain (DER, leaf first); one that cannot be parsed is left out."""
    found = []
    for index, der in enumerate(ders):
        try:
            cert = x509.load_der_x509_certificate(der)
            hosts = _hosts(cert)
            found.append(
                Certificate(
                    _name(cert, hosts),
                    _role(index, cert),
                    cert.not_valid_before_utc,
                    cert.not_valid_after_utc,
                    hosts,
                )
            )
        except ValueError:
            continue
    return tuple(found)


def below_minimum(version: str | None, minimum: str | None) -> str | None:
    """The problem when ``version`` (OpenSSL's name, ``TLSv1.2``) is older than ``minimum``
    (the sites file's ``tls_min_version``, ``1.3``); None when it is not, or either is None."""
    if version is None or minimum is None or _number(version) >= _number(minimum):
        return None
    return (
        f"the server negotiated {version.replace('TLSv', 'TLS ')}, below the site's"
        f" tls_min_version {minimum}"
    )


def expired(message: str, chain: Handshake | None, now: datetime) -> str:
    """The detail of a verification that failed on a certificate's dates (``message``, OpenSSL's
    "certificate has expired" or "certificate is not yet valid"), naming each certificate of the
    presented ``chain`` outside its validity at ``now``, with the date it crossed."""
    named = []
    for cert in chain.chain if chain else ():
        if cert.not_after < now:
            named.append(f"{cert.described()} (notAfter {_when(cert.not_after)})")
        elif cert.not_before > now:
            named.append(f"{cert.described()} (notBefore {_when(cert.not_before)})")
    return f"{message}: {', '.join(named)}" if named else message


def mismatch(message: str, chain: Handshake | None) -> str:
    """The detail of a host name that the server's certificate does not name: OpenSSL's
    ``message`` ("certificate is not valid for 'x'"), then the names the leaf does carry."""
    leaf = chain.chain[0] if chain and chain.chain and chain.chain[0].role == "leaf" else None
    if leaf is None:
        return message
    hosts = leaf.hosts[:MAX_NAMED_HOSTS]
    more = len(leaf.hosts) - len(hosts)
    if not hosts:
        return f"{message}; it names no host (its subject is {leaf.name!r})"
    listed = ", ".join(hosts) + (f" and {more} more" if more else "")
    return f"{message}; it is for {listed}"


def _ders(chain: list | None) -> list[bytes]:
    # 3.11's SSL object gives _ssl.Certificate objects; 3.13's public methods give DER bytes.
    return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain or ()]


def _name(cert: x509.Certificate, hosts: tuple[str, ...]) -> str:
    """The subject's CN; else (a leaf may carry none) its first host name, else its subject."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else hosts[0] if hosts else cert.subject.rfc4514_string()
    name = name or "(no subject)"
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _role(index: int, cert: x509.Certificate) -> str:
    if index == 0:
        return "leaf"
    return "root" if cert.subject == cert.issuer else "intermediate"


def _hosts(cert: x509.Certificate) -> tuple[str, ...]:
    """A leaf's subjectAltName DNS names and IP addresses; none when it has none or it cannot be
    read (a malformed extension is the server's problem, reported by verification)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return (
            *names.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in names.get_values_for_type(x509.IPAddress)),
        )
    except (
        x509.ExtensionNotFound,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        ValueError,
    ):
        return ()


def _number(version: str) -> tuple[int, int]:
    """``TLSv1.2`` or ``1.2`` -> (1, 2); ``TLSv1`` -> (1, 0); SSLv3 sorts below every TLS."""
    if version.startswith("SSL"):
        return (0, 0)
    found = _VERSION.search(version)
    return (int(found[1]), int(found[2] or 0)) if found else (0, 0)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
