"""The SQL of the SLA report (issue 17): each site's figures over whole UTC days (a calendar
month), its incidents, its downtime and the maintenance left out.

Figures (checks, ups, maint_checks) come from ``site_checks_daily``: a month is whole UTC days,
so the daily rollup is exact for it, always current (kept by trigger, where the hourly one lags
until maintenance refreshes it) and ~24 times fewer rows. Since migration 8 its checks and ups
leave maintenance out and ``maint_checks`` counts the final checks inside a window.

The rollup also says which sites need no raw rows at all: a site whose final checks in the
period were all up and outside maintenance, with no ``down`` verdict in it, and whose last run
before the period was up, outside maintenance and not judged down, has no incident and no
maintenance time in the period (no run in it is down or in maintenance, and none is open from
before). Only the other sites' runs are read from ``site_checks``, so a month of mostly healthy
sites costs a few index probes per site. The rollup counts every raw row ever stored (raw days
are dropped before rollup days), so this never hides a down run the raw rows still hold.

Incidents come from raw ``site_checks``, as runs: a run (site, scheduled_at) is in maintenance
when a final check of it is; it is down when its verdict across locations (``site_verdicts``)
is ``down``, or, without a verdict (one location, or none recorded), when none of its final
checks was up. A run's state holds until the site's next run (the last run's until ``now``).
Consecutive down runs outside maintenance form an incident: it starts at the first down run and
ends at the first up run after it (None: still down at ``now``); runs in maintenance neither
start nor end one. Its downtime is its time within the period, less the maintenance runs'
time within it; the site's maintenance time is that of all its maintenance runs within the
period. To find the start of an incident already open when the period begins, and the end of
one still open when it ends, each site's runs are read from its last up run before the period
to its first up run after it (two index probes).

Trade-off: raw rows are kept ``SITEWATCH_RETENTION_DAYS`` (default 90); for days no longer
kept, incidents, downtime and maintenance time are missing while the rollup's figures remain
(``raw_since`` says from when raw rows exist). The read walks the key range of the period of
each site that had trouble in it and sorts its runs a few times (window functions): 0.8 s for 20
such sites checked every 5 minutes (172,000 runs) on a development machine, so about 3 minutes
for 1,000 sites checked every minute if every one of them had trouble that month. That suits a
report made now and then, not a page load: it runs under ``SITEWATCH_REPORT_TIMEOUT_SECONDS``,
and the Sites page computes a month once and caches it (``dashboard.report_cache``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from psycopg import IsolationLevel
from psycopg.errors import QueryCanceled

from sitewatch.errors import StorageError
from sitewatch.storage.partitions import partition_days
from sitewatch.storage.timeouts import bounded, seconds_setting

REPORT_TIMEOUT_VAR = "SITEWATCH_REPORT_TIMEOUT_SECONDS"
# A month of 1,000 sites checked every minute, every one of them with trouble, reads in about
# 3 minutes (above); a month of mostly healthy sites in seconds. Two minutes keeps a report
# that would pin a database backend and a thread for longer from doing so, and is raised for
# bigger installations.
DEFAULT_REPORT_TIMEOUT = 120.0


def report_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """``SITEWATCH_REPORT_TIMEOUT_SECONDS``: seconds each statement of a report's read may run
    (0.1 to 3600, default 120), for ``sitewatch report`` and the Sites page alike; unset or
    empty takes the default.

    Raises SettingError naming the variable, the range and the default for any other value.
    """
    return seconds_setting(environ, REPORT_TIMEOUT_VAR, DEFAULT_REPORT_TIMEOUT)


@dataclass(frozen=True)
class Incident:
    """Consecutive down runs of a site outside maintenance.

    start: the first down run's scheduled time. end: the first up run's after it (None: still
    down at the report's ``now``). error, detail: of the first down check of the first down run.
    downtime: its time within the period, less maintenance within it.
    """

    site: str
    start: datetime
    end: datetime | None
    error: str | None
    detail: str | None
    downtime: timedelta


@dataclass(frozen=True)
class SitePeriod:
    """One site's figures over the period.

    checks, ups: final checks outside maintenance and how many were up (daily rollup, summed
    over locations). maint_checks: final checks in maintenance. maintenance: the time its runs
    in maintenance cover within the period. incidents: those overlapping the period, oldest
    first.
    """

    site: str
    checks: int
    ups: int
    maint_checks: int
    maintenance: timedelta
    incidents: tuple[Incident, ...]

    @property
    def downtime(self) -> timedelta:
        """The incidents' downtime within the period, maintenance excluded."""
        return sum((i.downtime for i in self.incidents), timedelta())


@dataclass(frozen=True)
class Period:
    """What the report reads for the UTC days ``first`` (inclusive) to ``after`` (exclusive),
    as of ``now``. sites: each site with rollup rows in the period, by name. raw_since: the
    oldest day raw checks are kept for (None: none are)."""

    first: date
    after: date
    now: datetime
    sites: tuple[SitePeriod, ...]
    raw_since: date | None

    @property
    def start(self) -> datetime:
        """Midnight UTC of ``first``."""
        return _midnight(self.first)

    @property
    def end(self) -> datetime:
        """Midnight UTC of ``after``: the period's exclusive end."""
        return _midnight(self.after)


# %(start)s and %(end)s bound the period; %(stop)s = least(end, now), since time after now is not
# known yet. The {placeholders} are lengths of time clipped to [start, stop) (``_clip``).
# A verdict is unique per run, so its LEFT JOIN adds no rows. runs' constant bound on now lets
# the planner skip the partitions made ahead. Only the ``troubled`` sites' runs are read (the
# module's docstring says why the others have no incident and no maintenance time).
_PERIOD = """
    WITH figures AS (
        SELECT site, sum(checks)::bigint AS checks, sum(ups)::bigint AS ups,
               sum(maint_checks)::bigint AS maint_checks
        FROM site_checks_daily WHERE day >= %(first)s AND day < %(after)s
        GROUP BY site
    ), troubled AS (
        SELECT f.site FROM figures f
        LEFT JOIN LATERAL (
            SELECT true AS down FROM site_verdicts v
            WHERE v.site = f.site AND v.verdict = 'down'
              AND v.scheduled_at >= %(start)s AND v.scheduled_at < %(end)s
            LIMIT 1) judged ON true
        LEFT JOIN LATERAL (
            -- the last run before the period: a final check of it down or in maintenance, or
            -- a down verdict, and it may reach into the period
            SELECT bool_or(NOT c.up OR c.maintenance OR v.verdict IS NOT DISTINCT FROM 'down')
                       AS down
            FROM site_checks c
            LEFT JOIN site_verdicts v ON v.site = c.site AND v.scheduled_at = c.scheduled_at
            WHERE c.site = f.site AND c.final
              AND c.scheduled_at = (
                  SELECT max(p.scheduled_at) FROM site_checks p
                  WHERE p.site = f.site AND p.final AND p.scheduled_at < %(start)s)
            ) before ON true
        WHERE f.ups < f.checks OR f.maint_checks > 0 OR judged.down OR before.down
    ), bounds AS (
        SELECT f.site,
               coalesce((
                   SELECT c.scheduled_at FROM site_checks c
                   LEFT JOIN site_verdicts v
                       ON v.site = c.site AND v.scheduled_at = c.scheduled_at
                   WHERE c.site = f.site AND c.final AND c.up AND NOT c.maintenance
                     AND c.scheduled_at < %(start)s AND v.verdict IS DISTINCT FROM 'down'
                   ORDER BY c.scheduled_at DESC LIMIT 1), '-infinity') AS since,
               coalesce((
                   SELECT c.scheduled_at FROM site_checks c
                   LEFT JOIN site_verdicts v
                       ON v.site = c.site AND v.scheduled_at = c.scheduled_at
                   WHERE c.site = f.site AND c.final AND c.up AND NOT c.maintenance
                     AND c.scheduled_at >= %(end)s AND c.scheduled_at <= %(now)s
                     AND v.verdict IS DISTINCT FROM 'down'
                   ORDER BY c.scheduled_at LIMIT 1), %(now)s) AS until
        FROM troubled f
    ), runs AS (
        SELECT b.site, c.scheduled_at, bool_or(c.maintenance) AS maint,
               coalesce(min(c.verdict) = 'down', NOT bool_or(c.up)) AS down,
               (array_agg(c.error ORDER BY c.location, c.attempt) FILTER (WHERE NOT c.up))[1]
                   AS error,
               (array_agg(c.error_detail ORDER BY c.location, c.attempt)
                   FILTER (WHERE NOT c.up))[1] AS detail
        FROM bounds b
        CROSS JOIN LATERAL (
            SELECT c.scheduled_at, c.location, c.attempt, c.up, c.maintenance, c.error,
                   c.error_detail, v.verdict
            FROM site_checks c
            LEFT JOIN site_verdicts v ON v.site = b.site AND v.scheduled_at = c.scheduled_at
                 AND v.scheduled_at >= b.since AND v.scheduled_at <= b.until
            WHERE c.site = b.site AND c.final
              AND c.scheduled_at >= b.since AND c.scheduled_at <= b.until
              AND c.scheduled_at <= %(now)s
            OFFSET 0  -- a fence: walk each troubled site's key range, never every site's rows
            ) c
        GROUP BY b.site, c.scheduled_at
    ), timeline AS (
        SELECT r.*,
               coalesce(lead(r.scheduled_at) OVER (PARTITION BY r.site ORDER BY r.scheduled_at),
                        %(now)s) AS next_at
        FROM runs r
    ), outside AS (
        SELECT *, lag(down) OVER (PARTITION BY site ORDER BY scheduled_at) AS was_down
        FROM timeline WHERE NOT maint
    ), marked AS (
        -- a down run outside maintenance after one that was not down starts an incident;
        -- maintenance runs go back in between, to be subtracted from the incident they fall in
        SELECT site, scheduled_at, maint, down, error, detail, next_at,
               down AND was_down IS NOT TRUE AS starts
        FROM outside
        UNION ALL
        SELECT site, scheduled_at, maint, down, error, detail, next_at, false
        FROM timeline WHERE maint
    ), numbered AS (
        SELECT *, count(*) FILTER (WHERE starts)
                      OVER (PARTITION BY site ORDER BY scheduled_at) AS n
        FROM marked
    ), ended AS (
        -- a group starts at its incident's first down run; the incident ends at the group's
        -- first up run outside maintenance (the rest of the group is up time until the next)
        SELECT *, min(scheduled_at) FILTER (WHERE NOT maint AND NOT down)
                      OVER (PARTITION BY site, n) AS "end"
        FROM numbered WHERE n > 0
    ), incidents AS (
        SELECT site, min(scheduled_at) AS start, min("end") AS "end",
               (array_agg(error) FILTER (WHERE starts))[1] AS error,
               (array_agg(detail) FILTER (WHERE starts))[1] AS detail,
               coalesce(sum({maint_time})
                   FILTER (WHERE maint AND scheduled_at < coalesce("end", 'infinity')),
                   interval '0') AS maint_time
        FROM ended
        GROUP BY site, n
    ), maintenance AS (
        SELECT site, sum({maint_time}) AS time
        FROM timeline WHERE maint GROUP BY site
    )
    SELECT f.site, f.checks, f.ups, f.maint_checks, coalesce(m.time, interval '0'),
           i.start, i."end", i.error, i.detail, {incident_time} - i.maint_time
    FROM figures f
    LEFT JOIN maintenance m ON m.site = f.site
    LEFT JOIN incidents i ON i.site = f.site
         AND i.start < %(stop)s AND coalesce(i."end", 'infinity') > %(start)s
    ORDER BY f.site, i.start
"""


def _clip(start: str, end: str) -> str:
    """SQL: the length of [start, end) within [period start, stop), never negative."""
    return f"greatest(least({end}, %(stop)s) - greatest({start}, %(start)s), interval '0')"


_PERIOD_SQL = _PERIOD.format(
    maint_time=_clip("scheduled_at", "next_at"),
    incident_time=_clip("i.start", 'coalesce(i."end", %(now)s)'),
)


def period(
    conn, first: date, after: date, now: datetime, *, timeout: float | None = None
) -> Period:
    """Each site's ``SitePeriod`` for the UTC days ``first`` to ``after`` (exclusive), as of
    ``now`` (time after ``now`` counts as nothing; an incident still open runs until ``now``).

    Sites are those with daily rollup rows in the period. One query, read with
    ``raw_since`` in one REPEATABLE READ snapshot, so the figures and incidents agree.
    timeout: seconds each statement may run (``report_timeout()``; None: no limit of its own).
    Raises ValueError for a naive ``now`` or ``after <= first``, StorageError when PostgreSQL
    fails or the timeout passes (the message then names ``SITEWATCH_REPORT_TIMEOUT_SECONDS``).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC), got a naive datetime")
    if after <= first:
        raise ValueError(f"the period {first}..{after} is empty")
    start, end = _midnight(first), _midnight(after)
    params = {"first": first, "after": after, "start": start, "end": end, "now": now}
    params["stop"] = min(end, now)
    with _bounded(conn, f"could not read the report of {first} to {after}", timeout) as cur:
        cur.execute(_PERIOD_SQL, params)
        rows = cur.fetchall()
        days = partition_days(cur)
    return Period(first, after, now, _sites(rows), min(days, default=None))


_VERSION = """
    SELECT count(*), coalesce(sum(checks), 0), coalesce(sum(ups), 0),
           coalesce(sum(maint_checks), 0)
    FROM site_checks_daily WHERE day >= %(first)s AND day < %(after)s
"""


def period_version(conn, first: date, after: date, *, timeout: float | None = None) -> tuple:
    """What a ``period`` of the same days was read from, in a form that changes when it does:
    the daily rollup's rows and sums over the days (a check stored late, rollup days pruned)
    and ``raw_since`` (raw days dropped). One small read of the rollup, for a cache to tell
    whether a stored ``Period`` still holds. Raises StorageError as ``period`` does.
    """
    params = {"first": first, "after": after}
    with _bounded(conn, f"could not read the report of {first} to {after}", timeout) as cur:
        cur.execute(_VERSION, params)
        figures = tuple(cur.fetchone())
        days = partition_days(cur)
    return (*figures, min(days, default=None))


@contextmanager
def _bounded(conn, failure: str, timeout: float | None) -> Iterator:
    """``timeouts.bounded`` in one REPEATABLE READ, READ ONLY snapshot, with a message that
    names the report's own setting: a report cancelled by its timeout says how long it was
    allowed and which variable to raise.

    The snapshot is asked for in psycopg's BEGIN (the connection's levels, restored after):
    ``SET TRANSACTION`` must come before any query, and the timeout is set by one.
    """
    level, read_only = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
    try:
        with bounded(conn, failure, timeout) as cur:
            yield cur
    except StorageError as exc:
        if not isinstance(exc.__cause__, QueryCanceled) or timeout is None:
            raise
        raise StorageError(
            f"PostgreSQL {failure}: the report's read took longer than {timeout:g} s and was "
            f"stopped ({REPORT_TIMEOUT_VAR} sets the limit)"
        ) from exc.__cause__
    finally:
        if not conn.closed:
            conn.isolation_level, conn.read_only = level, read_only


def _sites(rows: list[tuple]) -> tuple[SitePeriod, ...]:
    """Group the query's rows (one per incident, or one per site without any) by site."""
    sites: dict[str, tuple[tuple, list[Incident]]] = {}
    for site, checks, ups, maint_checks, maintenance, *incident in rows:
        _, incidents = sites.setdefault(site, ((checks, ups, maint_checks, maintenance), []))
        if incident[0] is not None:
            incidents.append(Incident(site, *incident))
    return tuple(
        SitePeriod(site, *figures, tuple(incidents)) for site, (figures, incidents) in sites.items()
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)
