"""The DNS check: ask a resolver (the URL's, else the system's first) for a name and record type
with ``dnspython`` and compare its answers with the site's ``answers``.

One query over UDP (TCP when the answer is truncated), bounded by the site's deadline. Each way
it fails has its own error kind: ``nxdomain``, ``servfail`` (or another refusal, named in the
detail), ``timeout``, and ``answer`` (no record of the type, or not the expected ones).
"""

from __future__ import annotations

from datetime import UTC, datetime
from time import perf_counter

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from sitewatch.config.dns_check import Answers, Query, canonical, query_of, spelled
from sitewatch.observation import Observation
from sitewatch.probe.failures import Failure, timed_out
from sitewatch.probe.limits import check_speed
from sitewatch.probe.timing import Deadline

MAX_SHOWN = 5  # answers named in a detail


def probe_dns(site, *, location: str) -> Observation:
    """Check the DNS answer of ``site.url`` once; never raises for what the resolver does.

    ``dns_ms`` and ``response_time_ms`` are the query's round trip; ``max_response_ms`` applies.
    """
    checked_at = datetime.now(UTC)
    query = query_of(site.url)
    started = perf_counter()
    failure = None
    try:
        got = _ask(query, site.timeout)
        failure = _compare(query, site.answers, got)
    except Failure as exc:
        failure = exc
    elapsed = round((perf_counter() - started) * 1000, 3)
    obs = Observation(
        site=site.name,
        location=location,
        url=site.url,
        checked_at=checked_at,
        up=False,
        response_time_ms=elapsed,
        dns_ms=elapsed,
    )
    failure = failure or check_speed(site.max_response_ms, elapsed)
    if failure is not None:
        obs.error, obs.error_detail = failure.kind, failure.detail
    obs.up = failure is None
    return obs


def _ask(query: Query, timeout: float) -> list[str]:
    """The answers of ``query.type`` the resolver sent, canonical; raises Failure."""
    resolver = query.resolver or _system_resolver()
    message = dns.message.make_query(query.name, query.type)
    deadline = Deadline(timeout)
    try:
        response = dns.query.udp(
            message, resolver, timeout=deadline.remaining(), port=query.port, ignore_trailing=True
        )
        if response.flags & dns.flags.TC:  # truncated: the whole answer over TCP, in what is left
            response = dns.query.tcp(
                message, resolver, timeout=deadline.remaining(), port=query.port
            )
    except dns.exception.Timeout:
        raise timed_out(timeout, f"waiting for {resolver}'s answer") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise Failure("servfail", f"no usable answer from {resolver}: {exc}") from exc
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise Failure("nxdomain", f"{query.name} does not exist (NXDOMAIN from {resolver})")
    if rcode != dns.rcode.NOERROR:
        raise Failure("servfail", f"{resolver} answered {dns.rcode.to_text(rcode)}")
    wanted = dns.rdatatype.from_text(query.type)
    return [
        canonical(query.type, _text(query.type, rdata))
        for rrset in response.answer
        if rrset.rdtype == wanted
        for rdata in rrset
    ]


def _system_resolver() -> str:
    try:
        return str(dns.resolver.Resolver().nameservers[0])
    except (dns.exception.DNSException, OSError, IndexError) as exc:
        raise Failure("servfail", f"no system resolver configured: {exc}") from exc


def _text(kind: str, rdata) -> str:
    if kind == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return spelled(rdata.to_text())


def _compare(query: Query, expected: Answers | None, got: list[str]) -> Failure | None:
    what = f"{query.name} {query.type}"
    if not got:
        return Failure("answer", f"no {query.type} record for {query.name}")
    if expected is None:
        return None
    wanted = [canonical(query.type, value) for value in expected.values]
    present = [value for value in wanted if value in got]
    if expected.match == "any" and present:
        return None
    if expected.match == "all" and len(present) == len(wanted):
        return None
    missing = [value for value in wanted if value not in got]
    need = "one of" if expected.match == "any" else "all of"
    return Failure(
        "answer",
        f"{what}: expected {need} {_shown(wanted)}, got {_shown(got)} (missing {_shown(missing)})",
    )


def _shown(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_SHOWN])
    return f"[{shown}{', …' if len(values) > MAX_SHOWN else ''}]"
