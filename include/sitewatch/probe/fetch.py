"""One attempt's HTTP exchange: send, follow redirects, read the body up to its cap.

Redirects are followed here rather than by requests, for four reasons: requests reads a redirect's
whole body into memory (unbounded), it cannot tell a loop from a long chain, each hop must get
only the time left on the attempt's deadline, and it keeps custom headers (an API key) on a
redirect to another origin. A redirect's own body is never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import urljoin, urlsplit

import requests
from requests.utils import requote_uri

from sitewatch.probe.failures import Failure, classify, redact_url, strip_userinfo, timed_out
from sitewatch.probe.timing import Trace

MAX_REDIRECTS = 10
CHUNK = 64 * 1024
_BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")
_ORIGIN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class Fetched:
    """What the exchange produced. ``body`` holds content-decoded bytes, at most the cap."""

    status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] | None = None  # the final response's, case-insensitive
    body: bytes | None = None
    body_bytes: int | None = None
    body_done_at: float | None = None  # perf_counter time of the last body byte
    failure: Failure | None = None


@dataclass
class _Hop:
    method: str
    url: str
    headers: dict
    body: bytes | None


def fetch(
    session: requests.Session,
    site,
    trace: Trace,
    verify: bool | str,
    secret_headers: frozenset[str] = frozenset(),
    secret_body: bool = False,
) -> Fetched:
    """Run the exchange for ``site`` within ``trace.deadline``. Never raises for the site's faults:
    transport problems, redirect trouble and an oversized body come back as ``Fetched.failure``.

    secret_headers: lower-cased names of headers whose value came from a ``${VAR}``; with
    ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` they are dropped on the first
    redirect to another origin and never sent again on that attempt. secret_body: the body holds
    a secret (a flow's step), so a redirect that would send it to another origin is not followed
    (error ``redirects``).
    """
    result = Fetched()
    body = site.body.encode() if site.body is not None else None  # UTF-8, not http.client's latin-1
    hop = _Hop(site.method, site.url, dict(site.headers), body)
    visited: list[str] = []
    try:
        while True:
            result.final_url = strip_userinfo(hop.url)
            response = _send(session, hop, trace, verify)
            with response:
                result.status = response.status_code
                if not (site.follow_redirects and response.is_redirect):
                    result.content_type = response.headers.get("content-type")
                    result.headers = response.headers
                    _read_body(response, site.max_body_bytes, trace, result)
                    return result
                visited.append(hop.url)
                if len(visited) > MAX_REDIRECTS:
                    raise Failure("redirects", _too_many(visited))
                hop = _next_hop(session, response, hop, _ORIGIN_HEADERS | secret_headers)
                if secret_body and hop.body is not None and origin(hop.url) != origin(visited[0]):
                    where = redact_url(hop.url)
                    raise Failure("redirects", f"not followed to {where}: the body holds secrets")
    except Failure as failure:
        result.failure = failure
    except Exception as exc:  # whatever the server provoked, it is a value on the observation
        stage, seconds = trace.stage, trace.deadline.seconds
        result.failure = classify(exc, hop.url, seconds, stage, trace.aborted)
    return result


def _send(session: requests.Session, hop: _Hop, trace: Trace, verify) -> requests.Response:
    remaining = trace.deadline.remaining()
    if remaining <= 0:
        raise timed_out(trace.deadline.seconds, "following redirects")
    trace.stage = "waiting for the response headers"
    return session.request(
        hop.method,
        hop.url,
        headers=hop.headers,
        data=hop.body,
        timeout=(remaining, remaining),
        verify=verify,
        allow_redirects=False,
        stream=True,
    )


def _read_body(response: requests.Response, cap: int, trace: Trace, result: Fetched) -> None:
    """Read the content-decoded body in chunks, stopping at ``cap`` bytes or the deadline.

    Decoding happens chunk by chunk (urllib3 bounds each decompression step), so a gzip bomb
    costs at most ``cap`` bytes of memory before it is refused.
    """
    trace.stage = "reading the body"
    chunks: list[bytes] = []
    total = 0
    while True:
        if trace.deadline.expired():
            raise timed_out(trace.deadline.seconds, trace.stage)
        chunk = response.raw.read(min(CHUNK, cap + 1 - total), decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            result.body_bytes = cap
            raise Failure("body_too_large", f"body exceeds the cap of {cap} bytes")
        chunks.append(chunk)
    if trace.aborted:  # the watchdog's EOF looks like a normal end of a read-to-close body
        raise timed_out(trace.deadline.seconds, trace.stage)
    result.body_done_at = perf_counter()
    result.body = b"".join(chunks)
    result.body_bytes = total


def _next_hop(
    session: requests.Session, response: requests.Response, hop: _Hop, private: frozenset[str]
) -> _Hop:
    """The request a redirect asks for, with the method and header rules browsers apply.

    private: lower-cased names of the headers that must not leave the origin. Raises Failure
    (``redirects``) when the Location is not an http(s) URL with a host.
    """
    location = session.get_redirect_target(response)
    try:
        target = requote_uri(urljoin(hop.url, location))
        scheme, host, _port = origin(target)
    except ValueError as exc:  # e.g. a malformed IPv6 literal or port in Location
        raise Failure("redirects", f"invalid redirect target {location[:80]!r}") from exc
    if scheme not in _DEFAULT_PORTS:
        raise Failure("redirects", f"redirect to unsupported scheme {scheme!r}")
    if not host:
        raise Failure("redirects", f"invalid redirect target {location[:80]!r}: no host")
    method, body, headers = hop.method, hop.body, dict(hop.headers)
    status = response.status_code
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
    if origin(target) != origin(hop.url):
        # Credentials meant for the site must not follow it elsewhere: not to another host, and
        # not in clear text to http or to another service on the same host.
        headers = {k: v for k, v in headers.items() if k.lower() not in private}
    return _Hop(method, target, headers, body)


def origin(url: str) -> tuple[str, str | None, int | None]:
    """``url``'s origin: scheme, lower-cased host and port (the scheme's default when absent).

    Raises ValueError for a malformed host or port.
    """
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _too_many(visited: list[str]) -> str:
    seen: set[str] = set()
    for url in visited:
        if url in seen:
            return f"redirect loop: {redact_url(url)} visited again"
        seen.add(url)
    return f"more than {MAX_REDIRECTS} redirects (the last from {redact_url(visited[-1])})"
