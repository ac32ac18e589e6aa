"""Retention of site_checks: daily partitions ahead of time, hourly rollups, expired days dropped.

``site_checks`` is partitioned by UTC day of ``scheduled_at`` (migration 4), so expiring raw rows
is dropping whole partitions: no DELETE, no vacuum, no bloat. Their figures outlive them in
``site_checks_hourly`` (per site, hour and location: final attempts and how many were up, kept
current by the insert trigger since migration 9; response time p50/p95/max, computed here), which
lives much longer; ``site_checks_daily`` (kept by the same trigger), ``site_verdicts`` (a run's
verdict across locations, migration 6) and ``site_latest`` (migration 9) are pruned on the
same longer retention. The maintenance DAG (sitewatch.airflow.retention_dag) runs
``maintain`` hourly; docs/retention.md is the operator's view.

Every function takes a psycopg 3 connection and ``now`` (so tests choose the clock), runs in its
own transaction, and imports nothing from Airflow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sitewatch.errors import SettingError
from sitewatch.storage.partitions import CREATE_PARTITIONS, LIST_PARTITIONS, partition_day
from sitewatch.storage.schema import transaction

log = logging.getLogger(__name__)

RETENTION_VAR = "SITEWATCH_RETENTION_DAYS"
ROLLUP_RETENTION_VAR = "SITEWATCH_ROLLUP_RETENTION_DAYS"
DAYS_AHEAD = 7  # partitions made in advance, so the drain rarely has to make one
# Hours of percentiles recomputed on every run: a row is normally stored seconds after its check,
# but a drain that was down catches up later. A row arriving later than this is counted (by the
# trigger) but not in its hour's percentiles.
LATE_HOURS = 48
MAX_DAYS = 36_500


@dataclass(frozen=True)
class RetentionSettings:
    """How long data is kept, in days.

    raw_days: rows of ``site_checks`` (``SITEWATCH_RETENTION_DAYS``, default 90).
    rollup_days: rows of ``site_checks_hourly``, ``site_checks_daily`` and ``site_verdicts``
    (``SITEWATCH_ROLLUP_RETENTION_DAYS``, default 730).
    """

    raw_days: int = 90
    rollup_days: int = 730

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RetentionSettings:
        """Read the settings; an unset or empty variable takes its default.

        Raises SettingError naming the variable when a value is not a whole number of days
        from 1 to 36500.
        """
        return cls(
            raw_days=_days(environ, RETENTION_VAR, cls.raw_days),
            rollup_days=_days(environ, ROLLUP_RETENTION_VAR, cls.rollup_days),
        )


def _days(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_DAYS:
        raise SettingError(
            f"{name}={text!r}: expected a whole number of days from 1 to {MAX_DAYS} "
            f"(default {default})"
        )
    return value


@dataclass(frozen=True)
class MaintenanceResult:
    """What one ``maintain`` did: partitions created and dropped (names), rollup rows written
    and pruned."""

    created: int
    hourly_rows: int
    dropped: list[str]
    pruned: int


def maintain(conn, now: datetime, settings: RetentionSettings) -> MaintenanceResult:
    """Run every step in order: partitions ahead, rollups, then drop and prune.

    Rollups come before the drop, so the hours of a day are rolled up before its rows go.
    Raises StorageError when PostgreSQL fails; steps already done stay done.
    """
    created = create_partitions(conn, now)
    hourly = refresh_hourly(conn, now)
    dropped = drop_expired_partitions(conn, now, settings.raw_days)
    pruned = prune_rollups(conn, now, settings.rollup_days)
    return MaintenanceResult(created, hourly, dropped, pruned)


def create_partitions(conn, now: datetime, days_ahead: int = DAYS_AHEAD) -> int:
    """Create the partitions of today and the next ``days_ahead`` UTC days that are missing;
    return how many were created. Raises StorageError."""
    today = now.astimezone(UTC).date()
    days = [today + timedelta(days=i) for i in range(days_ahead + 1)]
    with transaction(conn, "could not create partitions") as cur:
        cur.execute(CREATE_PARTITIONS, (days,))
        created = cur.fetchone()[0]
    log.info("create_partitions: created=%s from=%s to=%s", created, days[0], days[-1])
    return created


# Final attempts outside maintenance, like the dashboard's uptime; percentile_cont and max skip
# NULL response times (a connection error has none). Recomputed, not added to: percentiles cannot
# be merged. Per location, since each location sees its own response times. The counts (checks,
# ups, maint_checks) are the insert trigger's (migration 9), kept current batch by batch: they are
# written here only for an hour the trigger never saw (rows stored before migration 9 that it did
# not recount), never over the trigger's. Rows are taken in key order, as the trigger takes them,
# so a refresh and a drain batch that share an hour wait for each other instead of deadlocking.
_REFRESH_HOURLY = """
    INSERT INTO site_checks_hourly AS h
        (site, hour, location, checks, ups, p50_ms, p95_ms, max_ms, maint_checks)
    SELECT site, date_trunc('hour', scheduled_at, 'UTC'), location,
           count(*) FILTER (WHERE NOT maintenance),
           count(*) FILTER (WHERE up AND NOT maintenance),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms)
               FILTER (WHERE NOT maintenance),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms)
               FILTER (WHERE NOT maintenance),
           max(response_time_ms) FILTER (WHERE NOT maintenance),
           count(*) FILTER (WHERE maintenance)
    FROM site_checks
    WHERE final AND scheduled_at >= %s
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (site, hour, location) DO UPDATE
    SET p50_ms = excluded.p50_ms, p95_ms = excluded.p95_ms, max_ms = excluded.max_ms
"""
# The newest hour whose percentiles maintenance computed: the trigger makes rows for new hours
# with counts only (no max_ms even when response times exist), so this is where the last refresh
# got to. An hour whose every check failed without a response has no max_ms either, which only
# makes a refresh go further back than it needs to.
_NEWEST_REFRESHED = "SELECT max(hour) FROM site_checks_hourly WHERE max_ms IS NOT NULL"


def refresh_hourly(conn, now: datetime, late_hours: int = LATE_HOURS) -> int:
    """Compute the percentiles of ``site_checks_hourly`` for the hours that may still receive
    rows; return the number of (site, hour, location) rows written.

    Those are the last ``late_hours`` hours, and further back from the newest hour already
    refreshed when maintenance has not run for longer (everything, the first time), so a pause
    leaves no gap. Hours before that keep their figures, also after their raw rows are dropped.
    Raises StorageError.
    """
    recent = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    recent -= timedelta(hours=late_hours)
    with transaction(conn, "could not refresh the hourly rollup") as cur:
        cur.execute(_NEWEST_REFRESHED)
        newest = cur.fetchone()[0]
        since = recent if newest is not None and newest >= recent else newest
        cur.execute(_REFRESH_HOURLY, (since if since is not None else "-infinity",))
        written = cur.rowcount
    log.info("refresh_hourly: rows=%s since=%s", written, since or "the beginning")
    return written


def drop_expired_partitions(conn, now: datetime, retention_days: int) -> list[str]:
    """Drop the partitions whose whole day is older than ``now - retention_days``; return their
    names.

    A day is dropped only once its last instant is past the cutoff, so every row younger than
    ``retention_days`` stays, and the day straddling the cutoff stays whole. Only partitions
    named by sitewatch (``site_checks_pYYYYMMDD``) are touched. Dropping a partition locks
    ``site_checks`` briefly; a drain batch holding it makes this wait at most 30 s, then fail
    (the task retries). Raises StorageError.
    """
    cutoff = now - timedelta(days=retention_days)
    with transaction(conn, "could not drop expired partitions") as cur:
        cur.execute("SET LOCAL lock_timeout = '30s'")
        cur.execute(LIST_PARTITIONS)
        expired = []
        for (name,) in cur.fetchall():
            day = partition_day(name)
            if day is not None and _start_of(day + timedelta(days=1)) <= cutoff:
                expired.append(name)
        for name in expired:
            cur.execute(f'DROP TABLE "{name}"')  # a name partition_day accepted: safe to quote
    log.info("drop_expired_partitions: dropped=%s cutoff=%s", len(expired), cutoff.isoformat())
    return expired


def prune_rollups(conn, now: datetime, retention_days: int) -> int:
    """Delete hourly and daily rollup rows, verdicts and ``site_latest`` rows older than
    ``now - retention_days``; return how many. Raises StorageError.

    Trade-off: ``site_verdicts`` is keyed by site first, so its DELETE reads the whole table
    (like the rollups'); hourly, it finds an hour's worth of runs to delete.
    """
    cutoff = now - timedelta(days=retention_days)
    with transaction(conn, "could not prune the rollups") as cur:
        # An hour, like a day, goes once it is wholly before the cutoff.
        cur.execute(
            "DELETE FROM site_checks_hourly WHERE hour <= %s", (cutoff - timedelta(hours=1),)
        )
        pruned = cur.rowcount
        cur.execute(
            "DELETE FROM site_checks_daily WHERE day < %s", (cutoff.astimezone(UTC).date(),)
        )
        pruned += cur.rowcount
        cur.execute("DELETE FROM site_verdicts WHERE scheduled_at < %s", (cutoff,))
        pruned += cur.rowcount
        # a site and location nothing was stored for in as long (a site removed long ago)
        cur.execute("DELETE FROM site_latest WHERE stored_at < %s", (cutoff,))
        pruned += cur.rowcount
    log.info("prune_rollups: deleted=%s cutoff=%s", pruned, cutoff.isoformat())
    return pruned


def _start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
