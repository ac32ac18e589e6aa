"""The TCP check: connect to ``host:port`` (``tcp://``) or also do a TLS handshake (``tls://``),
optionally send ``send``, and search ``reply_regex`` in the first bytes the server sends.

Same contract as the HTTP probe (``sitewatch.probe.http.probe_in_detail``): one deadline for the
whole attempt, enforced by the watchdog, and every failure a value on the observation. The phases
are timed like HTTP's (``dns_ms``, ``connect_ms``, ``tls_ms``); ``response_time_ms`` runs to the
end of the exchange: the connection (and handshake) when nothing is expected, else the read that
matched or the last byte read. The reply is read up to ``MAX_REPLY_BYTES``, until the pattern
matches, the server closes, or the deadline passes; the search runs on the regex budget of
``probe.patterns``.
"""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime
from time import perf_counter
from urllib.parse import urlsplit

from sitewatch.observation import Observation
from sitewatch.probe import chain
from sitewatch.probe.failures import HANDSHAKE, Failure, classify
from sitewatch.probe.limits import check_cert, check_speed
from sitewatch.probe.patterns import search
from sitewatch.probe.timing import Deadline, Trace, watchdog
from sitewatch.probe.transport import resolve

MAX_REPLY_BYTES = 64 * 1024  # a banner or a short reply; enough for any pattern worth writing
_CHUNK = 4096


def probe_tcp(site, *, ca_bundle: str | None, location: str) -> Observation:
    """Check the TCP (or TLS) service of ``site.url`` once; never raises for what it does.

    Errors (``error``): dns, connect, timeout (the detail names the stage), tls (handshake or
    verification, SNI checked as https does unless ``verify_tls: false``; ``ca_bundle`` replaces
    the default CAs; a TLS version below ``tls_min_version``), hostname_mismatch (the certificate
    is not for the URL's host), reply (``reply_regex`` not found in the first ``MAX_REPLY_BYTES``
    bytes, or the search ran out of time), then slow and cert_expiring as for HTTP. ``up``,
    ``error`` and ``error_detail`` are set; the caller fills the run's fields.
    """
    trace = Trace(Deadline(site.timeout), site.tls_min_version)
    checked_at = datetime.now(UTC)
    parts = urlsplit(site.url)
    done_at, failure, matched = None, None, None
    with watchdog(trace):
        try:
            sock = _open(parts, trace, site.verify_tls, ca_bundle)
            with sock:
                done_at = perf_counter()
                if site.send is not None:
                    trace.stage = "sending"
                    sock.sendall(site.send.encode())
                if site.reply_regex is not None:
                    matched, done_at = _read_reply(sock, site.reply_regex, trace)
                    if not matched:
                        failure = Failure("reply", f"pattern {site.reply_regex!r:.60} not found")
        except Failure as exc:
            failure = exc
        except (OSError, ValueError) as exc:
            failure = classify(exc, site.url, site.timeout, trace.stage, trace.aborted)
    deadline = trace.deadline
    obs = Observation(
        site=site.name,
        location=location,
        url=site.url,
        checked_at=checked_at,
        up=False,
        response_time_ms=deadline.ms_since_start(done_at if failure is None else perf_counter()),
        dns_ms=trace.dns_ms,
        connect_ms=trace.connect_ms,
        tls_ms=trace.tls_ms,
        regex=site.reply_regex,
        regex_matched=matched,
        tls_expires_at=trace.tls.expires_at if trace.tls else None,
        tls_version=trace.tls.version if trace.tls else None,
    )
    if failure is None:
        failure = check_speed(site.max_response_ms, obs.response_time_ms) or check_cert(
            site.min_cert_days, obs.tls_expires_at
        )
    if failure is not None:
        obs.error, obs.error_detail = failure.kind, failure.detail
    obs.up = failure is None
    return obs


def _open(parts, trace: Trace, verify: bool, ca_bundle: str | None) -> socket.socket:
    """Resolve, connect and (for ``tls://``) shake hands, timing each phase on ``trace``."""
    deadline = trace.deadline
    trace.stage = "resolving the host name"
    infos, seconds = resolve(parts.hostname, parts.port, deadline.remaining())
    trace.dns_ms = round(seconds * 1000, 3)
    trace.stage = "connecting"
    started = perf_counter()
    sock = _connect_any(infos, deadline)
    trace.track(sock)
    trace.connect_ms = round((perf_counter() - started) * 1000, 3)
    if parts.scheme != "tls":
        return sock
    trace.stage = HANDSHAKE
    started = perf_counter()
    try:
        tls = _context(verify, ca_bundle).wrap_socket(sock, server_hostname=parts.hostname)
    except BaseException as exc:
        trace.tls = chain.presented(exc)  # which certificate failed, and when it expires
        sock.close()
        raise
    trace.track(tls)
    trace.tls_ms = round((perf_counter() - started) * 1000, 3)
    trace.tls = chain.handshake(tls, verified=verify)
    if problem := chain.below_minimum(trace.tls.version, trace.tls_min_version):
        tls.close()
        raise Failure("tls", problem)
    return tls


def _connect_any(infos: list, deadline: Deadline) -> socket.socket:
    """Connect to the first address that accepts, within what is left of ``deadline``."""
    error: OSError = OSError("no address")
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(deadline.remaining(), 0.001))
            sock.connect(address)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error


def _context(verify: bool, ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_bundle if verify else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return chain.recording(context)


def _read_reply(sock: socket.socket, pattern: str, trace: Trace) -> tuple[bool, float]:
    """Read until ``pattern`` is found in what came so far (decoded as UTF-8, bad bytes replaced),
    the server closes, ``MAX_REPLY_BYTES`` are read or the deadline passes (raises the timeout)."""
    trace.stage = "reading the reply"
    received = bytearray()
    read_at = perf_counter()
    while len(received) < MAX_REPLY_BYTES:
        sock.settimeout(max(trace.deadline.remaining(), 0.001))
        chunk = sock.recv(min(_CHUNK, MAX_REPLY_BYTES - len(received)))
        if trace.aborted:
            raise TimeoutError("deadline")
        if not chunk:
            break
        received += chunk
        read_at = perf_counter()
        if _found(pattern, received, trace.deadline):
            return True, read_at
    return _found(pattern, received, trace.deadline), read_at


def _found(pattern: str, received: bytearray, deadline: Deadline) -> bool:
    try:
        return search(pattern, received.decode("utf-8", "replace"), deadline) is not None
    except Failure as exc:  # the search ran out of its budget: the reply was not recognised
        raise Failure("reply", exc.detail) from exc
