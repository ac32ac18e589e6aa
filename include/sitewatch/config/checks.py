"""The checks of the site keys: each turns a plain YAML value into a Site field or raises Invalid.

Checks are pure functions of the value, so the file loader and ``site_for_url`` share them, and
the loader may memoise them. Which key uses which check is declared in ``keys``; ``notify`` holds
the checks of the alerting keys.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import regex

from sitewatch.config.schedule import check_cron
from sitewatch.config.values import describe, duration, text
from sitewatch.config.yamltree import Invalid

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
METHODS = ("GET", "HEAD", "POST")
MAX_URL, MAX_REGEX, MAX_HEADER_VALUE, MAX_BODY = 2048, 1000, 8 * 1024, 1024 * 1024
MAX_TAG, MAX_HEADERS = 100, 100  # Airflow refuses DAG tags longer than 100 characters
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name
_BAD_URL_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")


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
    url = text(value, MAX_URL)
    if _BAD_URL_CHAR.search(url):
        raise Invalid(f"invalid URL {url!r}: contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        detail = str(exc)
        raise Invalid(f"invalid URL {url!r}: {detail[:1].lower()}{detail[1:]}") from None
    if parts.scheme not in ("http", "https"):
        raise Invalid(f"invalid URL {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise Invalid(f"invalid URL {url!r}: no host")
    if parts.username is not None:
        # The URL is published with every check; credentials belong in headers.
        raise Invalid(f"invalid URL {url!r}: credentials in the URL; use an Authorization header")
    return url


def check_schedule(value: Any) -> timedelta | str:
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
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of header names to strings, got {describe(value)}")
    if len(value) > MAX_HEADERS:
        raise Invalid(f"too many headers: {len(value)} (at most {MAX_HEADERS})")
    for name, header in value.items():
        if not _TOKEN.fullmatch(name):
            raise Invalid(f"invalid header name {name!r}", item=name)
        try:
            text(header, MAX_HEADER_VALUE, "a string (quote numbers and true/false)")
        except Invalid as exc:
            exc.item = name
            raise
        if any(c in header for c in "\r\n\0"):
            raise Invalid("header value contains a line break or NUL", item=name)
    return MappingProxyType(dict(value))


def check_tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected a list of strings, got {describe(value)}")
    for index, tag in enumerate(value):
        try:
            if not text(tag, MAX_TAG).strip():
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
    owner = text(value, 100)
    if not owner.strip():
        raise Invalid("owner must not be empty")
    return owner


def check_body(value: Any) -> str:
    return text(value, MAX_BODY)


def check_timeout(value: Any) -> float:
    return duration(value, timedelta(milliseconds=1), timedelta(seconds=300)).total_seconds()
