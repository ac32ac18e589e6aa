"""How long a read may run: ``SITEWATCH_QUERY_TIMEOUT_SECONDS``, as PostgreSQL's
``statement_timeout`` on one transaction.

The reads that run over and over on a shared process need a bound, because their cost grows with
the sites file and the history, not with the request: every read of alerting (the drain waits
for it) and of the Sites page (the API server's thread pool). ``bound_session`` bounds every
statement of a connection (the Airflow layer opens alerting's and the page's so); ``bounded`` one
transaction, with a limit of its own where a read needs another. A read
that passes the limit is cancelled by PostgreSQL and surfaces as StorageError naming the limit;
its caller goes on as for any failed read (the drain logs it, the page says the results are
unavailable). Nothing here imports Airflow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from psycopg.errors import QueryCanceled

from sitewatch.errors import SettingError, StorageError
from sitewatch.storage.schema import transaction

TIMEOUT_VAR = "SITEWATCH_QUERY_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT = 10.0
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 3_600.0


def query_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """``SITEWATCH_QUERY_TIMEOUT_SECONDS``: seconds one statement of a bounded read may run
    (0.1 to 3600, default 10); unset or empty takes the default.

    Raises SettingError naming the variable, the range and the default for any other value.
    """
    return seconds_setting(environ, TIMEOUT_VAR, DEFAULT_TIMEOUT)


def seconds_setting(environ: Mapping[str, str], name: str, default: float) -> float:
    """A statement timeout read from variable ``name``: seconds from ``MIN_TIMEOUT`` to
    ``MAX_TIMEOUT`` in ASCII digits, ``default`` when unset or empty. Raises SettingError naming
    the variable, the range and the default for any other value."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) if text.isascii() else math.nan  # float() reads '٣' as 3
    except ValueError:
        value = math.nan
    if not MIN_TIMEOUT <= value <= MAX_TIMEOUT:  # False for NaN
        raise SettingError(
            f"{name}={text!r}: expected a number of seconds from {MIN_TIMEOUT:g} to "
            f"{MAX_TIMEOUT:g} (default {default:g})"
        )
    return value


@contextmanager
def bounded(conn, failure: str | Callable[[], str], timeout: float | None) -> Iterator:
    """``schema.transaction(conn, failure)`` whose statements each stop after ``timeout``
    seconds (None: no limit of its own, the server's applies).

    ``SET LOCAL``: the limit ends with the transaction, so the connection's other work keeps its
    own. A statement cancelled by the limit raises StorageError("PostgreSQL <failure>: canceling
    statement due to statement timeout (limit <t> s, SITEWATCH_QUERY_TIMEOUT_SECONDS)"), the
    transaction rolled back and the connection usable; other failures as ``transaction``.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    try:
        with transaction(conn, failure) as cur:
            if timeout is not None:
                milliseconds = max(1, round(timeout * 1000))
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true)", (str(milliseconds),)
                )
            yield cur
    except StorageError as exc:
        if timeout is None or not isinstance(exc.__cause__, QueryCanceled):
            raise
        raise StorageError(f"{exc} (limit {timeout:g} s, {TIMEOUT_VAR})") from exc.__cause__


def bound_session(conn, timeout: float) -> None:
    """Stop each later statement on ``conn`` after ``timeout`` seconds, for the connection's life
    (a transaction's ``SET LOCAL``, as in ``bounded``, still overrides it). Raises StorageError
    when PostgreSQL refuses."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    with transaction(conn, "could not set the statement timeout") as cur:
        milliseconds = max(1, round(timeout * 1000))
        cur.execute("SELECT set_config('statement_timeout', %s, false)", (str(milliseconds),))
