"""Turn what requests, urllib3, http.client or ssl raised into one error kind and a short detail.

Exceptions arrive wrapped several layers deep (requests.ConnectionError → urllib3 MaxRetryError →
NewConnectionError → ConnectionRefusedError), so classification walks the whole chain and the
first rule that matches any link wins; the rules are ordered from most to least specific. Details
are built from the specific cause, never from a wrapper's message, because wrappers quote URLs and
those can carry credentials.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions as u3

from sitewatch.probe import chain as tls_chain

log = logging.getLogger("sitewatch.probe.http")

MAX_DETAIL = 300  # characters; a detail is read in a log line and a table cell

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HANDSHAKE = "doing the TLS handshake"  # the Trace stage while TLS is being negotiated
_CUT = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
# OpenSSL's X509_V_ERR_* codes of a verification that failed on the host name or IP address, and
# on a certificate's dates (not yet valid, expired).
_HOST_MISMATCH = frozenset({62, 64})
_OUT_OF_DATE = frozenset({9, 10})


class Failure(Exception):
    """An attempt failed: ``kind`` is one of ``probe.ERROR_KINDS``, ``detail`` says why."""

    def __init__(self, kind: str, detail: str):
        self.kind = kind
        self.detail = clean(detail)
        super().__init__(f"{kind}: {self.detail}")


def timed_out(seconds: float, stage: str) -> Failure:
    """The timeout failure, saying what the attempt was doing when its deadline passed."""
    return Failure("timeout", f"timed out after {seconds:g} s while {stage}")


def clean(text: str) -> str:
    """Make ``text`` safe for a detail: no URL credentials, no control characters, short."""
    text = _CONTROL.sub(" ", _USERINFO.sub(r"\1", text)).strip()
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``; everything else kept."""
    return _USERINFO.sub(r"\1", url)


def redact_url(url: str) -> str:
    """``url`` for a message: no userinfo, and the query (often a token) shown as ``?…``."""
    parts = urlsplit(strip_userinfo(url))
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (cause, context, urllib3's ``reason``, exception args)."""
    seen: set[int] = set()
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        reason = getattr(item, "reason", None)  # ssl.SSLError.reason is a str, not a cause
        todo += [reason if isinstance(reason, BaseException) else None]
        todo += [item.__cause__, item.__context__]
        todo += [arg for arg in item.args if isinstance(arg, BaseException)]
    return found


def classify(exc: BaseException, url: str, timeout: float, stage: str, aborted: bool) -> Failure:
    """Map an exception from one request to ``url`` to a Failure.

    ``stage`` is what the attempt was doing (for timeouts); ``aborted`` is True when the watchdog
    cut the connection, so whatever broke afterwards is reported as the timeout it really is.
    """
    chain = causes(exc)
    if aborted or any(_is_timeout(link) for link in chain):
        return timed_out(timeout, stage)
    where = _host_port(url)
    if stage == HANDSHAKE and any(isinstance(link, _CUT) for link in chain):
        # A reset mid-handshake is a handshake failure, as the same cut with a FIN (SSLEOFError)
        # already is; without this the RST variant reads as a broken HTTP response.
        return Failure("tls", "TLS handshake failed: connection reset by the server")
    for link in chain:
        if isinstance(link, Failure):  # the transport's own verdict, e.g. a TLS version too old
            return link
        if isinstance(link, ssl.SSLCertVerificationError):
            return _verification(link)
    for types, kind, describe in _RULES:
        for link in chain:
            if isinstance(link, types):
                return Failure(kind, describe(link, where))
    # An unknown exception's message may quote request headers or URLs: keep only its type here,
    # and its message at DEBUG for whoever is investigating.
    log.warning("unexpected %s while probing %s", type(exc).__name__, redact_url(url))
    log.debug("unexpected exception while probing", exc_info=exc)
    return Failure("protocol", f"unexpected {type(exc).__name__}")


def _is_timeout(link: BaseException) -> bool:
    # urllib3's NewConnectionError subclasses ConnectTimeoutError for history's sake; a refused
    # connection is not a timeout.
    if isinstance(link, u3.NewConnectionError):
        return False
    return isinstance(link, TimeoutError | u3.TimeoutError | requests.Timeout)


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = "?"
    return f"{parts.hostname}:{port}"


def _verification(exc: ssl.SSLCertVerificationError) -> Failure:
    """A certificate the probe did not accept: ``hostname_mismatch`` when it is not for the host
    asked for (users read a generic TLS error as a broken server, not a wrong name), else ``tls``;
    the detail names the certificate from the chain the server presented (``chain.presented``)."""
    # verify_message is OpenSSL's own wording ("certificate has expired", "self-signed
    # certificate", "Hostname mismatch, ..."): specific, and free of the _ssl.c noise of str(exc).
    message = (getattr(exc, "verify_message", None) or str(exc)).rstrip(".")
    message = message[:1].lower() + message[1:]
    code, presented = getattr(exc, "verify_code", None), tls_chain.presented(exc)
    if code in _HOST_MISMATCH:
        # "hostname mismatch, certificate is not valid for 'x'": the kind already says the first
        message = message.partition(", ")[2] or message
        return Failure("hostname_mismatch", tls_chain.mismatch(message, presented))
    if code in _OUT_OF_DATE:
        return Failure("tls", tls_chain.expired(message, presented, datetime.now(UTC)))
    return Failure("tls", message)


def _ssl(exc: ssl.SSLError, _where: str) -> str:
    reason = (exc.reason or "").replace("_", " ").lower()
    return f"TLS handshake failed: {reason or exc.strerror or 'unknown error'}"


def _strerror(exc: BaseException) -> str:
    found = next((c for c in causes(exc) if isinstance(c, OSError) and c.strerror), None)
    return found.strerror if found else "unknown error"


def _status_line(exc: http.client.BadStatusLine, _where: str) -> str:
    line = str(getattr(exc, "line", "")).strip()
    return f"invalid status line {line[:80]!r}"


def _line_too_long(exc: http.client.LineTooLong, _where: str) -> str:
    # http.client's message is "got more than 65536 bytes when reading header line"
    what = str(exc).rpartition(" when reading ")[2] or "line"
    return f"response {what} longer than {http.client._MAXLINE} bytes"


def _http_exception(exc: http.client.HTTPException, _where: str) -> str:
    if isinstance(exc, http.client.UnknownProtocol):
        return f"unknown HTTP version {str(exc.args[0] if exc.args else '')[:40]!r}"
    if type(exc) is http.client.HTTPException and str(exc).startswith("got more than"):
        return f"response has more than {http.client._MAXHEADERS} headers"
    return f"broken HTTP ({type(exc).__name__})"


_Describe = Callable[[BaseException, str], str]
_RULES: list[tuple[type | tuple[type, ...], str, _Describe]] = [
    (socket.gaierror, "dns", lambda e, w: f"cannot resolve {w.rsplit(':', 1)[0]}: {e.strerror}"),
    (u3.NameResolutionError, "dns", lambda e, w: f"cannot resolve {w.rsplit(':', 1)[0]}"),
    (ConnectionRefusedError, "connect", lambda e, w: f"connection refused by {w}"),
    (ssl.SSLError, "tls", _ssl),
    (u3.NewConnectionError, "connect", lambda e, w: f"cannot connect to {w}: {_strerror(e)}"),
    (
        http.client.RemoteDisconnected,
        "protocol",
        lambda e, w: "server closed the connection without a response",
    ),
    (http.client.LineTooLong, "protocol", _line_too_long),
    (http.client.BadStatusLine, "protocol", _status_line),
    (u3.InvalidChunkLength, "protocol", lambda e, w: "invalid chunk length in the body"),
    (
        (http.client.IncompleteRead, u3.IncompleteRead),
        "protocol",
        lambda e, w: "connection closed before the end of the body",
    ),
    (
        (u3.DecodeError, requests.exceptions.ContentDecodingError),
        "protocol",
        lambda e, w: "cannot decode the compressed body",
    ),
    (ConnectionResetError, "protocol", lambda e, w: "connection reset by the server"),
    (BrokenPipeError, "protocol", lambda e, w: "server closed the connection mid-request"),
    (http.client.HTTPException, "protocol", _http_exception),
    (
        requests.exceptions.InvalidHeader,  # its message quotes the header value: never shown
        "protocol",
        lambda e, w: "a request header is not valid HTTP (value not shown)",
    ),
    (u3.ProtocolError, "protocol", lambda e, w: f"broken HTTP: {_strerror(e)}"),
]
