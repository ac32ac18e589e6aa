"""The Sites page's monthly reports: one computation per month at a time, a few at most, and a
closed month kept once computed.

A month's read (``storage.sla.period``) can take minutes on a big installation, and any
user who may read DAGs can ask for one, so the page must not start one per request:

- Single flight: a request for a month being computed waits for that computation and shares
  its result (or its error); it starts nothing and holds no thread while it waits.
- A cap (``SITEWATCH_REPORT_CONCURRENCY``, default 2) on computations of different months at
  once. A request past it is refused at once with ``Busy`` (the page answers 503 with
  Retry-After), rather than queueing in the API server's thread pool, which every route shares.
  Computations run on threads of their own, one per computation, so the pool is not theirs.
- A cache of closed months (the last ``MONTHS_KEPT`` asked for). The cached thing is the
  ``Period`` (the data), so every format, and a changed SLO target in the sites file, is
  rendered from it per request.

When a month's figures can still change, and what invalidates a cached one:

- The month itself: until it is over, and for ``settle`` after (the page gives the verdict
  sweep's horizon, ``judge.runs.HORIZON``: runs scheduled before the end are still being
  retried, stored and judged), a month is computed per request (single flight still applies).
- An incident still open when computed: its end and length change with time; not cached.
- A check stored late, or rollup days pruned: the daily rollup's rows and sums for the month
  change; raw days dropped by retention: ``raw_since`` changes. Each hit compares
  ``storage.sla.period_version`` (one small read of the rollup) with the one read before
  the computation, and recomputes on a difference.
- Anything else (a late check just outside the month that moves an incident's start or end, a
  verdict stored after ``settle``): an entry is recomputed after ``MAX_AGE`` at the latest.

Nothing here imports Airflow; the page adapts ``read`` to its async route.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sitewatch.errors import Busy, SettingError
from sitewatch.storage import sla
from sitewatch.storage.sla import Period

log = logging.getLogger(__name__)

CONCURRENCY_VAR = "SITEWATCH_REPORT_CONCURRENCY"
DEFAULT_CONCURRENCY = 2
MAX_CONCURRENCY = 16
MONTHS_KEPT = 24  # two years of months; a Period holds a line per site and its incidents
MAX_AGE = timedelta(hours=24)
# A refused request may try again after this long (a computation rarely takes longer; the
# longest ends by the report's timeout).
RETRY_AFTER = 30


def concurrency(environ: Mapping[str, str] = os.environ) -> int:
    """``SITEWATCH_REPORT_CONCURRENCY``: how many months the page may compute at once (1 to
    16, default 2); unset or empty takes the default. Each holds a database connection and a
    thread while it runs. Raises SettingError naming the variable for any other value."""
    text = environ.get(CONCURRENCY_VAR, "").strip()
    if not text:
        return DEFAULT_CONCURRENCY
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_CONCURRENCY):
        raise SettingError(
            f"{CONCURRENCY_VAR}={text!r}: expected a whole number from 1 to {MAX_CONCURRENCY} "
            f"(default {DEFAULT_CONCURRENCY})"
        )
    return int(text)


@dataclass(frozen=True)
class _Entry:
    period: Period
    version: tuple
    read_at: float  # monotonic seconds


class MonthReports:
    """The report data (``Period``) of the months asked for, shared by every request of one
    process (the API server's), computed at most once at a time each.

    connect: opens a results connection (closed here after each use). settle: how long after
    its end a month may still change (see the module). size, max_age, monotonic: for tests.
    """

    def __init__(
        self,
        connect: Callable,
        *,
        settle: timedelta,
        size: int = MONTHS_KEPT,
        max_age: timedelta = MAX_AGE,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._connect = connect
        self._settle = settle
        self._size = size
        self._max_age = max_age.total_seconds()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[date, date], _Entry] = OrderedDict()
        self._running: dict[tuple[date, date], Future] = {}

    def closed(self, after: date, now: datetime) -> bool:
        """Whether the period ending at midnight UTC of ``after`` can be cached at ``now``."""
        return now >= datetime(after.year, after.month, after.day, tzinfo=UTC) + self._settle

    def read(
        self, first: date, after: date, now: datetime, *, limit: int, timeout: float | None
    ) -> Future:
        """A future of the ``Period`` of the UTC days ``first`` to ``after`` as of ``now``: done
        for a valid cached one, else the computation in progress, else a new one (at most
        ``limit`` at once, each statement under ``timeout`` seconds).

        Blocks only for the cache's check (``period_version``, under ``timeout``), so call it
        from a worker thread. Raises Busy when ``limit`` other months are being computed,
        StorageError when the check fails; the future raises what the computation raised.
        """
        key = (first, after)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and not self._holds(entry, key, timeout):
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
        with self._lock:
            if (entry := self._entries.get(key)) is not None:  # valid, or stored meanwhile
                self._entries.move_to_end(key)
                done: Future = Future()
                done.set_result(entry.period)
                return done
            if (running := self._running.get(key)) is not None:
                return running
            if len(self._running) >= limit:
                months = ", ".join(f"{f:%Y-%m}" for f, _ in sorted(self._running))
                raise Busy(
                    f"the Sites page computes at most {limit} report{'s' * (limit != 1)} at "
                    f"once ({CONCURRENCY_VAR}) and is computing {months}; try again in "
                    f"{RETRY_AFTER} s",
                    RETRY_AFTER,
                )
            future = Future()
            future.set_running_or_notify_cancel()  # a waiter that goes away cancels nothing
            self._running[key] = future
        threading.Thread(
            target=self._compute,
            args=(key, now, timeout, future),
            name=f"sitewatch-report-{first:%Y-%m}",
            daemon=True,
        ).start()
        return future

    def _holds(self, entry: _Entry, key: tuple[date, date], timeout: float | None) -> bool:
        """Whether a cached entry still describes its month: young enough, same data."""
        if self._monotonic() - entry.read_at > self._max_age:
            return False
        conn = self._connect()
        try:
            version = sla.period_version(conn, *key, timeout=timeout)
        finally:
            conn.close()
        if version != entry.version:
            log.info("report_cache: month=%s changed since it was read", f"{key[0]:%Y-%m}")
        return version == entry.version

    def _compute(self, key: tuple[date, date], now: datetime, timeout, future: Future) -> None:
        first, after = key
        started = self._monotonic()
        closed = self.closed(after, now)
        try:
            conn = self._connect()
            try:
                # read before the period: a change in between makes the next hit recompute
                version = sla.period_version(conn, *key, timeout=timeout) if closed else ()
                period = sla.period(conn, first, after, now, timeout=timeout)
            finally:
                conn.close()
        except BaseException as exc:
            with self._lock:
                del self._running[key]
            log.warning("report_cache: month=%s failed: %s", f"{first:%Y-%m}", exc)
            future.set_exception(exc)
            return
        kept = closed and not any(i.end is None for s in period.sites for i in s.incidents)
        with self._lock:
            del self._running[key]
            if kept:
                self._entries[key] = _Entry(period, version, started)
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        log.info(
            "report_cache: month=%s sites=%d seconds=%.1f cached=%s",
            f"{first:%Y-%m}",
            len(period.sites),
            self._monotonic() - started,
            kept,
        )
        future.set_result(period)
