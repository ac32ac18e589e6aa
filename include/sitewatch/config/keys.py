"""One check per site key: each turns a plain YAML value into the Site field or raises Invalid.

``FIELDS`` maps every key to its check and built-in default; it is the single list of valid keys.
Checks are pure functions of the value, so the file loader and ``site_for_url`` share them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import regex

from sitewatch.config.notify import check_notify, check_remind_every
from sitewatch.config.schedule import DURATION_HINT, check_cron, format_duration, parse_duration
from sitewatch.config.yamltree import Invalid

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
METHODS = ("GET", "HEAD", "POST")
MAX_URL, MAX_REGEX, MAX_HEADER_VALUE, MAX_BODY = 2048, 1000, 8 * 1024, 1024 * 1024
MAX_TAG, MAX_HEADERS = 100, 100  # Airflow refuses DAG tags longer than 100 characters
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name
_BAD_URL_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")
_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile ``pattern`` with the ``regex`` module (Python syntax), cached.

    The probe searches with the compiled pattern's ``timeout=`` so a pathological pattern cannot run
    unbounded. Raises ValueError like ``invalid regex at position 4: missing )``.
    """
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"invalid regex at position {exc.pos}: {exc.msg}") from exc


def describe(value: Any) -> str:
    """``integer 5``, ``string 'yes'``: a value and its YAML type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    kind = _KINDS.get(type(value), "mapping" if isinstance(value, dict) else type(value).__name__)
    text = repr(value)
    return f"{kind} {text[:60]}{'...' if len(text) > 60 else ''}"


def _text(value: Any, limit: int, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected {what}, got {describe(value)}")
    if len(value) > limit:
        raise Invalid(f"too long: {len(value)} characters (at most {limit})")
    return value


def _integer(value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"expected an integer, got {describe(value)}")
    if not low <= value <= high:
        raise Invalid(f"must be between {low} and {high}, got {value}")
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Let ``null`` unset an optional key (e.g. a site turning off a regex from ``defaults``)."""
    return lambda value: None if value is None else check(value)


def _duration(value: Any, low: timedelta, high: timedelta) -> timedelta:
    if not isinstance(value, str):
        hint = f" (add a unit: '{value}s')" if isinstance(value, int | float) else ""
        raise Invalid(f"expected {DURATION_HINT}, got {describe(value)}{hint}")
    try:
        result = parse_duration(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if result < low:
        raise Invalid(f"must be at least {format_duration(low)}, got {value!r}")
    if result > high:
        raise Invalid(f"must be at most {format_duration(high)}, got {value!r}")
    return result


def check_name(value: Any) -> str:
    name = _text(value, 63)
    if not NAME.fullmatch(name):
        raise Invalid(
            f"invalid name {name!r}: use a-z, 0-9, '_', '-'; start with a letter or digit"
        )
    return name


def check_url(value: Any) -> str:
    url = _text(value, MAX_URL)
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
    return _duration(value, timedelta(seconds=10), timedelta(days=365))


def check_regex(value: Any) -> str:
    pattern = _text(value, MAX_REGEX)
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
    method = _text(value, 10)
    if method not in METHODS:
        hint = f" (did you mean {method.upper()!r}?)" if method.upper() in METHODS else ""
        raise Invalid(f"method must be one of GET, HEAD, POST, got {method!r}{hint}")
    return method


def check_headers(value: Any) -> MappingProxyType:
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of header names to strings, got {describe(value)}")
    if len(value) > MAX_HEADERS:
        raise Invalid(f"too many headers: {len(value)} (at most {MAX_HEADERS})")
    for name, text in value.items():
        if not _TOKEN.fullmatch(name):
            raise Invalid(f"invalid header name {name!r}", item=name)
        try:
            _text(text, MAX_HEADER_VALUE, "a string (quote numbers and true/false)")
        except Invalid as exc:
            exc.item = name
            raise
        if any(c in text for c in "\r\n\0"):
            raise Invalid("header value contains a line break or NUL", item=name)
    return MappingProxyType(dict(value))


def check_tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected a list of strings, got {describe(value)}")
    for index, tag in enumerate(value):
        try:
            if not _text(tag, MAX_TAG).strip():
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
    owner = _text(value, 100)
    if not owner.strip():
        raise Invalid("owner must not be empty")
    return owner


def check_body(value: Any) -> str:
    return _text(value, MAX_BODY)


def check_timeout(value: Any) -> float:
    return _duration(value, timedelta(milliseconds=1), timedelta(seconds=300)).total_seconds()


# key -> (check, built-in default). The defaults here and on Site must agree (a test pins it).
FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "name": (check_name, None),
    "url": (check_url, None),
    "schedule": (check_schedule, timedelta(minutes=5)),
    "regex": (_optional(check_regex), None),
    "forbid_regex": (_optional(check_regex), None),
    "expect_status": (check_expect_status, ((200, 399),)),
    "max_response_ms": (_optional(lambda v: _integer(v, 1, 300_000)), None),
    "min_cert_days": (_optional(lambda v: _integer(v, 0, 3650)), None),
    "method": (check_method, "GET"),
    "headers": (check_headers, MappingProxyType({})),
    "body": (_optional(check_body), None),
    "timeout": (check_timeout, 10.0),
    "follow_redirects": (check_bool, True),
    "verify_tls": (check_bool, True),
    "max_body_bytes": (lambda v: _integer(v, 1024, 100 * 1024 * 1024), 5 * 1024 * 1024),
    "retries": (lambda v: _integer(v, 0, 20), 2),
    "retry_delay": (
        lambda v: _duration(v, timedelta(seconds=1), timedelta(days=1)),
        timedelta(seconds=30),
    ),
    "tags": (check_tags, ()),
    "owner": (check_owner, "sitewatch"),
    "enabled": (check_bool, True),
    "notify": (check_notify, ()),
    "remind_every": (check_remind_every, None),
}
REQUIRED = ("name", "url")
BUILTIN_DEFAULTS = {key: default for key, (_, default) in FIELDS.items()}
