"""JSONPath (RFC 9535) for ``expect``: one environment, compiled paths cached, regexes bounded.

The library is ``python-jsonpath`` in strict mode (RFC 9535 only: no non-standard functions or
syntax), so a path written here means what the RFC says. Its ``match()`` and ``search()`` filter
functions run the response's strings through a regex: here they run with the ``regex`` module's
``timeout=``, against the deadline that ``regex_deadline`` sets for the calling thread, so a
hostile body cannot hold a probe in a catastrophic pattern.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import jsonpath
from jsonpath.function_extensions import Match, Search
from jsonpath.path import JSONPath
from jsonpath.token import TOKEN_EOF

MAX_PATH = 1000  # characters

_local = threading.local()


class PathTimeout(Exception):
    """A filter regex ran out of the time ``regex_deadline`` gave it."""


def _remaining() -> float:
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return 1.0  # outside a probe (tests, validation): a second per search is plenty
    left = deadline - time.monotonic()
    if left <= 0:
        raise PathTimeout("time ran out in a JSONPath filter")
    return left


class _Bounded:
    """A compiled pattern whose searches stop at the thread's deadline."""

    __slots__ = ("pattern",)

    def __init__(self, pattern):
        self.pattern = pattern

    def fullmatch(self, value: str):
        try:
            return self.pattern.fullmatch(value, timeout=_remaining())
        except TimeoutError as exc:
            raise PathTimeout("a JSONPath filter regex ran out of time") from exc

    def search(self, value: str):
        try:
            return self.pattern.search(value, timeout=_remaining())
        except TimeoutError as exc:
            raise PathTimeout("a JSONPath filter regex ran out of time") from exc


def bounded_search(pattern, value: str):
    """``pattern.search(value)`` (a ``regex`` pattern) within the thread's ``regex_deadline``;
    raises PathTimeout when it runs out."""
    return _Bounded(pattern).search(value)


class _BoundedMatch(Match):
    def check_cache(self, pattern: str):
        compiled = super().check_cache(pattern)
        return None if compiled is None else _Bounded(compiled)


class _BoundedSearch(Search):
    def check_cache(self, pattern: str):
        compiled = super().check_cache(pattern)
        return None if compiled is None else _Bounded(compiled)


class _Environment(jsonpath.JSONPathEnvironment):
    def setup_function_extensions(self) -> None:
        super().setup_function_extensions()
        self.function_extensions["match"] = _BoundedMatch(thread_safe=True)
        self.function_extensions["search"] = _BoundedSearch(thread_safe=True)


_ENV = _Environment(strict=True)


@functools.lru_cache(maxsize=4096)
def compile_path(text: str) -> JSONPath:
    """Compile an RFC 9535 JSONPath, cached: validation fills the cache and the probe reuses it.

    Raises ValueError like ``invalid JSONPath at position 8: unexpected end of query``.
    """
    if len(text) > MAX_PATH:
        raise ValueError(f"JSONPath too long: {len(text)} characters (at most {MAX_PATH})")
    try:
        path = _ENV.compile(text)
    except jsonpath.JSONPathError as exc:
        token = getattr(exc, "token", None)
        where = ""
        if token is not None:
            at_end = token.kind == TOKEN_EOF
            where = " at the end" if at_end else f" at position {token.index + 1}"
        message = str(exc.args[0]) if exc.args else str(exc)
        raise ValueError(f"invalid JSONPath{where}: {message}") from None
    if not isinstance(path, JSONPath):  # a compound path (`$.a | $.b`) is not RFC 9535
        raise ValueError("invalid JSONPath: one query starting with $ expected")
    return path


@contextmanager
def regex_deadline(seconds: float) -> Iterator[None]:
    """Bound the filter regexes of JSONPath queries run by this thread to ``seconds`` from now."""
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = None
