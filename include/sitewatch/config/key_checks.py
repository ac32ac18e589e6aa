"""The checks of the site keys: each turns a plain YAML value into a Site field or raises Invalid.

Checks are pure functions of the value, so the file loader and ``site_for_url`` share them, and
the loader may memoise them. Which key uses which check is declared in ``keys``; ``notify`` holds
the checks of the alerting keys.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import regex

from sitewatch.config import variables
from sitewatch.config.dns_check import check_dns_url
from sitewatch.config.schedule import check_cron, format_duration, shortest_gap
from sitewatch.config.values import describe, duration, free_text, text
from sitewatch.config.yamltree import Invalid
from sitewatch.observation import SITE_NAME as NAME

METHODS = ("GET", "HEAD", "POST")
TCP_SCHEMES = ("tcp", "tls")  # a TCP check, plain or with a TLS handshake (sitewatch.probe.tcp)
MAX_URL, MAX_REGEX, MAX_HEADER_VALUE, MAX_BODY = 2048, 1000, 8 * 1024, 1024 * 1024
MAX_SCHEDULE = 1000  # a cron listing every value of every field is about 340 characters
MAX_TAG, MAX_HEADERS = 100, 100  # Airflow refuses DAG tags longer than 100 characters
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name
_BAD_URL_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_UNSENDABLE = re.compile(r"[\r\n\0]|[^\x00-\xff]")  # in a header value


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile ``pattern`` with the ``regex`` module (Python syntax), cached.

    The one cache of compiled patterns: validation fills it and the probe reuses it. The probe
    searches with the compiled pattern's ``timeout=`` so a pathological pattern cannot run
    unbounded. Raises ValueError like ``invalid regex at position 4: missing )``.
    """
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"invalid regex at position {exc.pos}: {exc.msg}") from exc


def check_name(value: Any) -> str:
    name = text(value, 63)
    if not NAME.fullmatch(name):
        raise Invalid(
            f"invalid name {name!r}: use a-z, 0-9, '_', '-'; start with a letter or digit"
        )
    return name


def check_url(value: Any) -> str:
    """An http(s) URL with a host that ``requests`` can send as written, a TCP check's
    ``tcp://host:port`` or ``tls://host:port``, or a DNS check's ``dns://[resolver]/name?type=A``
    (``dns_check``); raises Invalid."""
    url = text(value, MAX_URL)
    if _BAD_URL_CHAR.search(url):
        raise Invalid(f"invalid URL {url!r}: contains whitespace or control characters")
    if not url.isascii():
        _check_visible(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        detail = str(exc)
        raise Invalid(f"invalid URL {url!r}: {detail[:1].lower()}{detail[1:]}") from None
    if parts.scheme not in ("http", "https", *TCP_SCHEMES, "dns"):
        raise Invalid(f"invalid URL {url!r}: scheme must be http, https, tcp, tls or dns")
    if parts.scheme == "dns":
        check_dns_url(url, parts)
        return url
    if not parts.hostname:
        raise Invalid(f"invalid URL {url!r}: no host")
    if parts.scheme in TCP_SCHEMES:
        _check_tcp(url, parts)
    if parts.username is not None:
        # The URL is published with every check; credentials belong in headers.
        raise Invalid(f"invalid URL {url!r}: credentials in the URL; use an Authorization header")
    _check_host(url, parts.hostname)
    return url


def _check_tcp(url: str, parts) -> None:
    """A tcp:// or tls:// URL is a host and a port, written in lower case, and nothing else."""
    if not url.startswith(f"{parts.scheme}://"):
        raise Invalid(f"invalid URL {url!r}: write the scheme {parts.scheme}:// in lower case")
    if parts.port is None or parts.port == 0:
        raise Invalid(f"invalid URL {url!r}: a {parts.scheme} check needs a port, 1..65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        raise Invalid(f"invalid URL {url!r}: a {parts.scheme} check is host:port, no path or query")


def is_tcp(url: str) -> bool:
    """Whether ``url`` (a checked site URL) is a TCP check's: ``tcp://`` or ``tls://``."""
    return url.startswith(tuple(f"{scheme}://" for scheme in TCP_SCHEMES))


def kind_of(url: str) -> str:
    """The kind of check a checked site URL makes: ``http``, ``tcp`` (tcp:// or tls://) or
    ``dns``."""
    return "dns" if url.startswith("dns://") else "tcp" if is_tcp(url) else "http"


HTTP, FLOW, TCP, TLS, DNS = "http", "flow", "tcp", "tls", "dns"
KINDS = (HTTP, FLOW, TCP, TLS, DNS)
"""The kinds of check as the site keys tell them apart (``entry_kind``): each key declares which
of them take it (``keys.Key.kinds``). Finer than ``kind_of``, which the probe dispatches on: a
flow is an http(s) check of several requests, and only tls:// of the TCP checks shakes hands."""


def entry_kind(url: str, flow: bool) -> str:
    """The kind (one of ``KINDS``) of a site with checked ``url``; ``flow`` when it has steps
    (its url is then its first step's)."""
    if flow:
        return FLOW
    if url.startswith("dns://"):
        return DNS
    if is_tcp(url):
        return TLS if url.startswith("tls://") else TCP
    return HTTP


def _check_visible(url: str) -> None:
    """Refuse invisible format characters (category Cf) and lone surrogates (Cs) in ``url``.

    A bidi control such as U+202E makes the URL read differently from where it goes, and a
    zero-width space hides in a host; a surrogate (a command-line byte that is not UTF-8) cannot
    be sent at all. Whitespace and control characters are ``_BAD_URL_CHAR``'s.
    """
    for char in url:
        category = unicodedata.category(char)
        if category == "Cf":
            what = f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"
            raise Invalid(f"invalid URL {url!r}: contains invisible format character {what}")
        if category == "Cs":
            raise Invalid(f"invalid URL {url!r}: contains {char!r}, which is not a character")


def _check_host(url: str, host: str) -> None:
    """Refuse a host that ``requests`` would refuse ("URL has an invalid label").

    requests sends a non-ASCII host in its IDNA 2008 form (``ascii_host``) and refuses an ASCII
    host that starts with ``*`` or ``.``; checking the same here turns a probe that could never
    be sent into an issue with a line.
    """
    if host.startswith(("*", ".")):
        raise Invalid(f"invalid URL {url!r}: host {host!r} cannot start with '*' or '.'")
    try:
        ascii_host(host)
    except UnicodeError as exc:
        detail = f"host {host!r} is not a valid internationalised domain name: {exc}"
        raise Invalid(f"invalid URL {url!r}: {detail}") from None


def ascii_host(host: str) -> str:
    """``host`` as sent on the wire: unchanged when ASCII, else its IDNA form (``xn--bcher-kva``).

    Uses the ``idna`` package with UTS 46 mapping exactly as ``requests`` does, so a host that
    validates is one requests can send. Imported only for a non-ASCII host: its tables cost more
    to load than checking a whole sites file. Raises UnicodeError (``idna.IDNAError``).
    """
    if host.isascii():
        return host
    import idna

    return idna.encode(host, uts46=True).decode("ascii")


def check_schedule(value: Any) -> timedelta | str:
    """An interval (``5m``) or a 5-field cron; raises Invalid."""
    if isinstance(value, str) and len(value) > MAX_SCHEDULE:
        # Messages quote the text, and Python refuses to read a number past 4300 digits.
        raise Invalid(f"too long: {len(value)} characters (at most {MAX_SCHEDULE})")
    if isinstance(value, str) and len(value.split()) > 1:
        try:
            return check_cron(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    if not isinstance(value, str):
        raise Invalid(f"expected an interval like '5m' or a 5-field cron, got {describe(value)}")
    return duration(value, timedelta(seconds=10), timedelta(days=365))


def check_regex(value: Any) -> str:
    pattern = text(value, MAX_REGEX)
    if not pattern:
        raise Invalid("empty pattern matches everything; use null to have none")
    try:
        compile_pattern(pattern)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return pattern


def check_expect_status(value: Any) -> tuple[tuple[int, int], ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise Invalid("expected at least one status code or range")
    ranges = []
    for index, item in enumerate(items):
        try:
            ranges.append(_status_range(item))
        except Invalid as exc:
            exc.item = index if isinstance(value, list) else None
            raise
    return tuple(ranges)


def _status_range(item: Any) -> tuple[int, int]:
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"\d{3}(-\d{3})?", item):
        low, _, high_text = item.partition("-")
        low, high = int(low), int(high_text or low)
    else:
        raise Invalid(
            f"expected a status code like 200 or range like '200-399', got {describe(item)}"
        )
    for code in (low, high):
        if not 100 <= code <= 599:
            raise Invalid(f"status code {code} is out of range 100..599")
    if low > high:
        raise Invalid(f"range {item!r} runs backwards")
    return low, high


def check_method(value: Any) -> str:
    method = text(value, 10)
    if method not in METHODS:
        hint = f" (did you mean {method.upper()!r}?)" if method.upper() in METHODS else ""
        raise Invalid(f"method must be one of GET, HEAD, POST, got {method!r}{hint}")
    return method


def check_headers(value: Any) -> MappingProxyType:
    """Header name -> value; raises Invalid with ``item`` the header's name."""
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of header names to strings, got {describe(value)}")
    if len(value) > MAX_HEADERS:
        raise Invalid(f"too many headers: {len(value)} (at most {MAX_HEADERS})")
    problems = []
    for name, header in value.items():
        if not _TOKEN.fullmatch(name):
            problems.append(Invalid(f"invalid header name {name!r}", item=name))
            continue
        try:
            _check_header_value(header)
        except Invalid as exc:
            exc.item = name
            problems.append(exc)
    if problems:
        raise Invalid(problems[0].message, item=problems[0].item, also=tuple(problems[1:]))
    return MappingProxyType(dict(value))


def _check_header_value(header: Any) -> None:
    """Raise Invalid unless ``header`` can be sent as written and names only allowed variables.

    http.client encodes header values as Latin-1 and refuses line breaks; requests refuses a
    leading space, and RFC 9110 has receivers drop trailing ones. Trade-off: other control
    characters (a tab inside the value) are sent as they are, as HTTP allows.
    """
    text(header, MAX_HEADER_VALUE, "a string (quote numbers and true/false)")
    if found := _UNSENDABLE.search(header):
        char = found.group()
        if char in "\r\n\0":
            raise Invalid("header value contains a line break or NUL")
        raise Invalid(
            f"header value contains {char!r} (U+{ord(char):04X}): HTTP headers carry only"
            " Latin-1 characters; percent-encode or base64 the value"
        )
    if header[:1].isspace() or header[-1:].isspace():
        raise Invalid(
            "header value starts or ends with whitespace, which HTTP does not carry (RFC 9110);"
            " remove it"
        )
    for name in variables.names(header) if "${" in header else ():
        if problem := variables.refusal(name):
            raise Invalid(problem)


def check_tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected a list of strings, got {describe(value)}")
    for index, tag in enumerate(value):
        try:
            if not free_text(tag, MAX_TAG).strip():
                raise Invalid("empty tag")
        except Invalid as exc:
            exc.item = index
            raise
    return tuple(dict.fromkeys(value))  # drop repeats, keep order


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return value


def check_owner(value: Any) -> str:
    owner = free_text(value, 100)
    if not owner.strip():
        raise Invalid("owner must not be empty")
    return owner


TLS_VERSIONS = ("1.2", "1.3")
"""The values of ``tls_min_version``. 1.0 and 1.1 are not among them: the probe never agrees on
those (Python's default TLS context requires 1.2), so such a minimum would change nothing."""


def check_tls_min_version(value: Any) -> str:
    """``"1.2"`` or ``"1.3"``; YAML reads an unquoted ``1.2`` as a number, taken as written."""
    if isinstance(value, float):
        value = repr(value)
    if value not in TLS_VERSIONS:
        raise Invalid(
            f'expected "1.2" or "1.3" (TLS 1.0 and 1.1 are refused anyway), got {describe(value)}'
        )
    return value


def check_body(value: Any) -> str:
    return text(value, MAX_BODY)


def check_timeout(value: Any) -> float:
    return duration(value, timedelta(milliseconds=1), timedelta(seconds=300)).total_seconds()


def timeout_problem(values: Mapping[str, Any]) -> str | None:
    """The message when a complete set of site values has a ``timeout`` longer than the shortest
    time between two of its runs: a site that hangs would then have every run's attempt waiting
    at once, each holding a probe slot, and the next run would start before the last one knew."""
    timeout, gap = timedelta(seconds=values["timeout"]), shortest_gap(values["schedule"])
    if timeout <= gap:
        return None
    between = (
        "the schedule's interval"
        if isinstance(values["schedule"], timedelta)
        else ("the shortest time between two runs of the cron schedule")
    )
    return (
        f"{format_duration(timeout)} is longer than {between}, {format_duration(gap)}"
        " (shorten the timeout, or check less often)"
    )
