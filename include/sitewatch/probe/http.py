"""The probe: one attempt at one site, from a validated ``Site`` to an ``Observation``.

Plain Python on requests, no Airflow. The transport (``_transport``) bounds the attempt by one
deadline and times the connection's phases; the exchange (``_fetch``) sends, follows redirects and
reads the body up to its cap; this module judges what came back against the site's assertions.
Every failure is a value on the observation; ``probe`` itself never raises for what a site does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import NamedTuple

from urllib3.exceptions import InsecureRequestWarning

from sitewatch.config.key_checks import kind_of
from sitewatch.config.secrets import NO_SECRETS, Secrets
from sitewatch.names import LOCAL_LOCATION
from sitewatch.observation import MAX_TEXT, Observation
from sitewatch.probe import dns, flow, tcp
from sitewatch.probe.assertions import Response, Result, check_status, evaluate, first_failure
from sitewatch.probe.failures import Failure, redact_url, strip_userinfo
from sitewatch.probe.fetch import Fetched, fetch
from sitewatch.probe.limits import check_cert, check_speed
from sitewatch.probe.patterns import check_patterns, decode
from sitewatch.probe.timing import Deadline, Trace, watchdog
from sitewatch.probe.transport import open_session

ERROR_KINDS: tuple[str, ...] = (
    "dns",  # the host name did not resolve
    "connect",  # TCP connection refused or unreachable
    "timeout",  # the attempt's deadline passed (detail names the stage)
    "tls",  # handshake or certificate verification failed (detail names the reason)
    "hostname_mismatch",  # the server's certificate is not for the host (detail: whom it is for)
    "protocol",  # not valid HTTP: bad status line, truncated or undecodable body
    "redirects",  # more than 10 redirects, a loop, or a redirect to a non-HTTP scheme
    "body_too_large",  # the decoded body exceeds the site's max_body_bytes
    "status",  # the status is not in expect_status
    "regex",  # regex not found, forbid_regex found, or the search ran out of time
    "slow",  # response_time_ms above max_response_ms
    "cert_expiring",  # fewer than min_cert_days left on the server certificate
    "assertion",  # an assertion of the site's expect failed (detail: which, expected, got)
    "reply",  # tcp: reply_regex not found in the server's first bytes (sitewatch.probe.tcp)
    "nxdomain",  # dns: the name does not exist (sitewatch.probe.dns)
    "servfail",  # dns: the resolver answered SERVFAIL, REFUSED or another error (detail names it)
    "answer",  # dns: no record of the type, or not the expected answers
)

# Text fields that are not redacted: the site's name and location are the row's identity, the
# error a fixed kind.
_NOT_REDACTED = frozenset({"site", "location", "error"})

log = logging.getLogger("sitewatch.probe.http")


class Probed(NamedTuple):
    """An observation and the outcome of each of the site's ``expect`` assertions, in order."""

    observation: Observation
    assertions: list[Result]


def probe(
    site,
    *,
    ca_bundle: str | None = None,
    secrets: Secrets = NO_SECRETS,
    location: str = LOCAL_LOCATION,
) -> Observation:
    """``probe_in_detail(...).observation``: the attempt's observation alone."""
    return probe_in_detail(site, ca_bundle=ca_bundle, secrets=secrets, location=location)[0]


def probe_in_detail(
    site,
    *,
    ca_bundle: str | None = None,
    secrets: Secrets = NO_SECRETS,
    location: str = LOCAL_LOCATION,
) -> Probed:
    """Check ``site`` once, from ``location``, and return what was seen.

    ``site`` is a validated ``sitewatch.config.site.Site`` (only its attributes are read).
    ``ca_bundle`` is a PEM file of CAs to trust instead of the default store; without it
    ``REQUESTS_CA_BUNDLE`` (then ``CURL_CA_BUNDLE``) is honoured as requests does. Other
    environment settings (proxies, ``.netrc``) are deliberately ignored. ``secrets`` says which
    headers of ``site`` came from ``${VAR}`` and with what values (``expand_headers``): those
    headers do not follow a redirect to another origin, and those values are masked in every text
    field of the observation, in any of their written forms (a site may echo them in its body, a
    redirect or an error; see ``Secrets.redact``); after a redirect, ``final_url`` keeps no query.
    ``location`` is where this attempt runs (one of ``site.locations``; the caller knows, being
    on that location's queue): it goes on the observation and in the User-Agent
    (``transport.user_agent``), unless the site sets a User-Agent header of its own.

    The whole attempt (DNS, connect, TLS, redirects, body, regex) is bounded by ``site.timeout``;
    the call returns within that plus some tens of milliseconds of bookkeeping. A hung resolver
    or a catastrophic regex on a starved CPU can leave a daemon helper thread running briefly
    after the return (see ``transport.resolve``, ``_patterns``). The observation has
    ``scheduled_at=None, attempt=1, final=True`` for the caller to fill. One summary line is
    logged at INFO on ``sitewatch.probe.http``.

    Errors: never raises for anything the site does; failures are ``error`` (one of
    ``ERROR_KINDS``) and ``error_detail``. Precedence when several apply: transport, status, regex,
    assertion (the first failing entry of ``expect``, evaluated in order after the body is read;
    ``sitewatch.probe.assertions``), slow, cert_expiring. Returns the observation and each
    assertion's outcome, secrets masked in both. Trade-off: every attempt opens fresh
    connections (no pooling across attempts), which is what makes the phase timings meaningful.
    """
    kind = kind_of(site.url)
    if kind == "tcp":
        return _redacted(tcp.probe_tcp(site, ca_bundle=ca_bundle, location=location), [], secrets)
    if kind == "dns":
        return _redacted(dns.probe_dns(site, location=location), [], secrets)
    trace = Trace(Deadline(site.timeout), site.tls_min_version)
    checked_at = datetime.now(UTC)
    quiet = nullcontext() if site.verify_tls else _insecure_allowed()
    with quiet, open_session(trace, location) as session, watchdog(trace):
        verify = _verify(site.verify_tls, ca_bundle)
        if site.steps:  # a flow (sitewatch.probe.flow): its steps, on this session and deadline
            fetched = flow.run_flow(session, site, trace, verify, secrets)
        else:
            fetched = fetch(session, site, trace, verify, secrets.headers)
    obs = _observe(site, location, checked_at, trace, fetched)
    if site.steps:
        return _redacted(*flow.judge(site, obs, fetched, trace.deadline))
    failure, results = _judge(site, obs, fetched, trace.deadline)
    if failure is not None:
        obs.error, obs.error_detail = failure.kind, failure.detail
    obs.up = failure is None
    obs, results = _redacted(obs, results, secrets)
    # DEBUG: the Airflow task logs the attempt's summary line itself (sitewatch.attempt)
    log.debug(
        "site=%s location=%s status=%s up=%s response_ms=%s error=%s",
        site.name,
        location,
        obs.status_code,
        obs.up,
        obs.response_time_ms,
        obs.error,
    )
    return Probed(obs, results)


def _redacted(obs: Observation, results: list[Result], secrets: Secrets) -> Probed:
    if secrets.values:
        _redact(obs, secrets)
        results = [
            dataclasses.replace(result, detail=secrets.redact(result.detail)) for result in results
        ]
    return Probed(obs, results)


def _verify(verify_tls: bool, ca_bundle: str | None) -> bool | str:
    if not verify_tls:
        return False
    env = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return ca_bundle or env or True


@contextmanager
def _insecure_allowed():
    # The site opted out of verification; urllib3's warning on every attempt would only be noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


def _observe(
    site, location: str, checked_at: datetime, trace: Trace, fetched: Fetched
) -> Observation:
    """The observation's measured fields; ``up`` and ``error`` are decided by ``_judge``."""
    deadline = trace.deadline
    return Observation(
        site=site.name,
        location=location,
        url=site.url,
        checked_at=checked_at,
        up=False,
        status_code=fetched.status,
        response_time_ms=deadline.ms_since_start(fetched.body_done_at),
        dns_ms=trace.dns_ms,
        connect_ms=trace.connect_ms,
        tls_ms=trace.tls_ms,
        ttfb_ms=deadline.ms_since_start(trace.headers_at),
        regex=site.regex[:MAX_TEXT] if site.regex is not None else None,
        final_url=fetched.final_url[:MAX_TEXT] if fetched.final_url else None,
        body_bytes=fetched.body_bytes,
        tls_expires_at=trace.tls.expires_at if trace.tls else None,
        tls_version=trace.tls.version if trace.tls else None,
    )


def _redact(obs: Observation, secrets: Secrets) -> None:
    if obs.final_url and obs.final_url != strip_userinfo(obs.url):
        # Redirected after being sent a secret: the target's query (``/login?next=…``) is where a
        # site puts what it was sent, possibly in a form no mask recognises (base64, signed).
        obs.final_url = redact_url(obs.final_url)
    for f in dataclasses.fields(obs):
        value = getattr(obs, f.name)
        if isinstance(value, str) and f.name not in _NOT_REDACTED:
            setattr(obs, f.name, secrets.redact(value))


def _judge(
    site, obs: Observation, fetched: Fetched, deadline: Deadline
) -> tuple[Failure | None, list[Result]]:
    """The first failed check in precedence order, or None, and the ``expect`` results. Sets
    ``obs.regex_matched``.

    Every check that can be evaluated is, so ``regex_matched`` is known even on a 500; ``expect``
    is evaluated when the exchange itself succeeded (there is a response to assert on).
    """
    failures = [fetched.failure, check_status(site.expect_status, fetched.status)]
    text = None
    if fetched.body is not None:
        text = decode(fetched.body, fetched.content_type)
        obs.regex_matched, pattern_failures = check_patterns(site, text, deadline)
        failures += pattern_failures
    results: list[Result] = []
    if site.expect and fetched.failure is None:
        response = Response(
            fetched.status, fetched.headers, obs.response_time_ms, fetched.body, text
        )
        results = evaluate(site.expect, response, deadline)
        failures.append(first_failure(results))
    failures.append(check_speed(site.max_response_ms, obs.response_time_ms))
    failures.append(check_cert(site.min_cert_days, obs.tls_expires_at))
    return next((f for f in failures if f is not None), None), results
