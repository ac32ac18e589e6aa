"""The SQL of SLOs (issue 17): availability, p95 latency and burn-rate counts over windows, the
error budget's daily series, and the burn-rate alerts that are firing (``site_slo_alerts``).

What counts: final checks outside maintenance (migration 8), every location's own (a site checked
from three places has three final checks a run), as the rollups count them. Availability and the
daily series read the rollups, so they cost the same at any history length: ``site_checks_hourly``
(kept ``SITEWATCH_ROLLUP_RETENTION_DAYS``) and ``site_checks_daily``, whose counts the insert
trigger keeps current (migration 9). The p95
and the burn-rate counts need raw rows: percentiles do not merge across hours, and the burn rate's
short windows (5 minutes) are finer than any rollup (each site's rows are read over its own
longest window only). Raw rows are kept ``SITEWATCH_RETENTION_DAYS`` (default 90), so a latency
window longer than that covers only what is kept. The monthly report's reads are in
``sitewatch.storage.sla``.

Every function takes a psycopg 3 connection, runs in its own transaction (``schema.transaction``,
StorageError on failure) and imports nothing from Airflow. Times must be timezone-aware. The
reads take a ``timeout`` (seconds a statement may run, ``storage.timeouts``) for callers that run
them over and over: the drain's burn-rate check and the Sites page.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from psycopg import sql
from psycopg.rows import class_row

from sitewatch.storage.schema import transaction
from sitewatch.storage.timeouts import bounded


@dataclass(frozen=True)
class Tally:
    """Final checks outside maintenance (``checks``) and how many of them were up (``ups``)."""

    checks: int
    ups: int

    @property
    def bad(self) -> int:
        """The checks that were down."""
        return self.checks - self.ups


# The window's hours, the current one included, per site: its whole UTC days from the daily
# rollup and the hours at either end from the hourly one (30 + at most 46 rows for 30 days,
# instead of 720 hours), each a range scan of its rollup's key. Both rollups count the same rows
# (the insert trigger keeps both, migration 9). JIT costs more than it saves on these small
# sums.
_AVAILABILITY = """
    SELECT w.site, coalesce(sum(t.checks), 0)::bigint, coalesce(sum(t.ups), 0)::bigint
    FROM unnest(%(sites)s::text[], %(since)s::timestamptz[], %(first)s::timestamptz[],
                %(after)s::timestamptz[]) AS w(site, since, first, after)
    LEFT JOIN LATERAL (
        SELECT checks, ups FROM site_checks_hourly
        WHERE site = w.site AND hour >= w.since AND hour < w.first
        UNION ALL
        SELECT checks, ups FROM site_checks_daily
        WHERE site = w.site AND day >= (w.first AT TIME ZONE 'UTC')::date
          AND day < (w.after AT TIME ZONE 'UTC')::date
        UNION ALL
        SELECT checks, ups FROM site_checks_hourly
        WHERE site = w.site AND hour >= w.after AND hour < %(until)s
    ) t ON true
    GROUP BY w.site
"""


def availability(
    conn, windows: Mapping[str, timedelta], now: datetime, *, timeout: float | None = None
) -> dict[str, Tally]:
    """Each site's ``Tally`` over its window, from the rollups (summed over locations): the
    ``window`` worth of hours up to the hour of ``now``, that one included (the trigger counts a
    check as it is stored). One query for every site, each with a window of its own.

    windows: site -> window length. A site without rows gets ``Tally(0, 0)``. timeout: seconds
    each statement may run (``storage.timeouts``; None: no limit of its own).
    Raises ValueError for a naive ``now``, StorageError when PostgreSQL fails or the timeout
    passes.
    """
    if not windows:
        return {}
    until = _hour(now) + timedelta(hours=1)
    since = [until - window for window in windows.values()]
    days = [_whole_days(start, until) for start in since]
    params = {
        "sites": list(windows),
        "since": since,
        "first": [first for first, _ in days],
        "after": [after for _, after in days],
        "until": until,
    }
    with bounded(conn, "could not read the availability", timeout) as cur:
        cur.execute("SET LOCAL jit = off")
        cur.execute(_AVAILABILITY, params)
        return {site: Tally(checks, ups) for site, checks, ups in cur}


def _whole_days(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The UTC midnights (first, after) that bound the whole days of ``[since, until)``; both
    ``until`` when it holds none, so its hours all come from the hourly rollup."""
    first = _midnight(since)
    if first < since:
        first += timedelta(days=1)
    after = _midnight(until)
    return (first, after) if first < after else (until, until)


def _midnight(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# One range scan of each site's primary key; the constant lower bound lets the planner search only
# the partitions of the widest window.
_P95 = """
    SELECT w.site, t.p95
    FROM unnest(%(sites)s::text[], %(since)s::timestamptz[]) AS w(site, since)
    CROSS JOIN LATERAL (
        SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY c.response_time_ms) AS p95
        FROM site_checks c
        WHERE c.site = w.site AND c.final AND c.up AND NOT c.maintenance
          AND c.scheduled_at > w.since AND c.scheduled_at > %(earliest)s
          AND c.scheduled_at <= %(now)s
    ) t
"""


def latency_p95(
    conn, windows: Mapping[str, timedelta], now: datetime, *, timeout: float | None = None
) -> dict[str, float | None]:
    """Each site's 95th percentile response time (ms) of its final up checks outside maintenance
    in ``(now - window, now]``, from raw ``site_checks``; None without such checks.

    Trade-off: exact, but it sorts the window's rows (43,200 for 30 days of a site checked every
    minute), and only raw rows still kept count (``SITEWATCH_RETENTION_DAYS``, default 90);
    the hourly rollup's p95s cannot be merged into a window's. One query for every site.
    timeout: as ``availability``'s. Raises ValueError for a naive ``now``, StorageError when
    PostgreSQL fails or the timeout passes.
    """
    if not windows:
        return {}
    _aware(now)
    since = [now - window for window in windows.values()]
    params = {"sites": list(windows), "since": since, "earliest": min(since), "now": now}
    with bounded(conn, "could not read the p95 latency", timeout) as cur:
        cur.execute(_P95, params)
        return dict(cur.fetchall())


# Each site's rows over its own longest window only: an aggregate per site in a LATERAL subquery
# (which PostgreSQL cannot flatten into one join over the widest window), a range scan of the
# site's primary key whose bound is a parameter per site, so the daily partitions before it are
# skipped site by site; the constant lower bound lets the planner leave out those older than the
# widest window at all. Before, every site was read over the widest window of any: one site
# with a 90-day rule made every evaluation read 90 days of every site's checks.
_BURN = """
    SELECT w.site, t.*
    FROM unnest(%(sites)s::text[], %(since)s::timestamptz[]) AS w(site, since)
    CROSS JOIN LATERAL (
        SELECT {columns} FROM site_checks c
        WHERE c.site = w.site AND c.final AND NOT c.maintenance
          AND c.scheduled_at > w.since AND c.scheduled_at > %(earliest)s
          AND c.scheduled_at <= %(now)s
    ) t
"""


def burn_counts(
    conn,
    lengths: Mapping[str, Collection[timedelta]],
    now: datetime,
    *,
    timeout: float | None = None,
) -> dict[str, dict[timedelta, Tally]]:
    """For each site and each of its window lengths (5 min, 1 h, ...), the ``Tally`` of its
    final checks outside maintenance in ``(now - length, now]``, from raw ``site_checks``.

    lengths: site -> the window lengths to count for it (``alerting.slo.burn_lengths``). Every
    site and length asked about is in the result, and only those: a site's rows are read over
    its own longest length, whatever the others ask for. One query, with a FILTER per length,
    so each row is read once whatever the number of lengths.
    timeout: seconds each statement may run (``storage.timeouts``; None: no limit of its own).
    Raises ValueError for a naive ``now`` or a site without lengths, StorageError when
    PostgreSQL fails or the timeout passes.
    """
    _aware(now)
    wanted = {site: sorted(set(own)) for site, own in lengths.items()}
    if not all(wanted.values()):
        empty = next(site for site, own in wanted.items() if not own)
        raise ValueError(f"burn_counts needs at least one window length (site {empty!r})")
    if not wanted:
        return {}
    every = sorted(set().union(*wanted.values()))
    since = [now - own[-1] for own in wanted.values()]
    params: dict = {"sites": list(wanted), "since": since, "earliest": min(since), "now": now}
    columns = []
    for i, length in enumerate(every):
        params[f"since{i}"] = now - length
        within = sql.SQL("c.scheduled_at > {}").format(sql.Placeholder(f"since{i}"))
        columns += [
            sql.SQL("count(*) FILTER (WHERE {})").format(within),
            sql.SQL("count(*) FILTER (WHERE c.up AND {})").format(within),
        ]
    query = sql.SQL(_BURN).format(columns=sql.SQL(", ").join(columns))
    with bounded(conn, "could not count the checks for burn rates", timeout) as cur:
        # the plan holds a scan per partition of the widest window: JIT compiled them for
        # seconds (8.6 s at 91 partitions) to run a query of milliseconds
        cur.execute("SET LOCAL jit = off")
        cur.execute(query, params)
        rows = cur.fetchall()
    index = {length: i for i, length in enumerate(every)}
    # a length longer than the site's own window was counted over that window only: not returned
    return {
        site: {
            length: Tally(*counts[2 * index[length] : 2 * index[length] + 2])
            for length in wanted[site]
        }
        for site, *counts in rows
    }


# Every day of the range, with zeros for a day without rows (the chart needs each one).
_DAILY = """
    SELECT d.day::date, coalesce(sum(r.checks), 0)::bigint, coalesce(sum(r.ups), 0)::bigint
    FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day') AS d(day)
    LEFT JOIN site_checks_daily r ON r.site = %(site)s AND r.day = d.day::date
    GROUP BY d.day
    ORDER BY d.day
"""


def daily_tallies(
    conn, site: str, first: date, last: date, *, timeout: float | None = None
) -> list[tuple[date, Tally]]:
    """(day, ``Tally``) for each UTC day from ``first`` to ``last`` inclusive, oldest first,
    from ``site_checks_daily`` (summed over locations; a day without rows counts zero): the
    series behind a site's error-budget chart (``sitewatch.alerting.slo.budget_series``).

    timeout: as ``availability``'s. Raises StorageError when PostgreSQL fails or the timeout
    passes.
    """
    with bounded(conn, f"could not read the daily figures of {site}", timeout) as cur:
        cur.execute(_DAILY, {"site": site, "first": first, "last": last})
        return [(day, Tally(checks, ups)) for day, checks, ups in cur]


@dataclass(frozen=True)
class SloAlert:
    """A burn-rate alert that is firing: one row of ``site_slo_alerts`` (migration 8).

    severity: the rule's (``page`` or ``warn``). firing_since: when it began. burn_long,
    burn_short: the latest burn rates over the rule's two windows. last_notified_at: when its
    message was claimed for sending (None: not sent yet, or the send failed and was released).
    """

    site: str
    severity: str
    firing_since: datetime
    burn_long: float
    burn_short: float
    last_notified_at: datetime | None


_ALERT_COLUMNS = "site, severity, firing_since, burn_long, burn_short, last_notified_at"
_LOAD_ALERTS = f"SELECT {_ALERT_COLUMNS} FROM site_slo_alerts WHERE site = ANY(%s::text[])"
# firing_since stays the first one's; xmax = 0 only on a row this statement inserted.
_SAVE_ALERT = f"""
    INSERT INTO site_slo_alerts AS a ({_ALERT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (site, severity) DO UPDATE
    SET burn_long = excluded.burn_long, burn_short = excluded.burn_short,
        last_notified_at = excluded.last_notified_at
    RETURNING (xmax = 0)
"""
_DELETE_ALERT = (
    f"DELETE FROM site_slo_alerts WHERE site = %s AND severity = %s RETURNING {_ALERT_COLUMNS}"
)
# Only while the claim is ours: a later evaluation may have claimed or ended it meanwhile.
_RELEASE_ALERT = (
    "UPDATE site_slo_alerts SET last_notified_at = NULL "
    "WHERE site = %s AND severity = %s AND last_notified_at = %s"
)


def slo_alerts(
    conn, sites: Sequence[str], *, timeout: float | None = None
) -> dict[tuple[str, str], SloAlert]:
    """The firing burn-rate alerts of ``sites``: (site, severity) -> ``SloAlert``. One query.
    timeout: as ``availability``'s. Raises StorageError."""
    if not sites:
        return {}
    with bounded(conn, "could not read the SLO alerts", timeout) as cur:
        cur.row_factory = class_row(SloAlert)
        cur.execute(_LOAD_ALERTS, (list(sites),))
        return {(a.site, a.severity): a for a in cur}


def save_slo_alert(conn, alert: SloAlert) -> bool:
    """Insert ``alert``, or update the burn rates and ``last_notified_at`` of the row already
    firing (its ``firing_since`` stays). Returns True when this call inserted it, so that of two
    evaluators that both saw it start, one sends the message. Raises StorageError."""
    with transaction(conn, f"could not store the SLO alert of {alert.site}") as cur:
        cur.execute(
            _SAVE_ALERT,
            (
                alert.site,
                alert.severity,
                alert.firing_since,
                alert.burn_long,
                alert.burn_short,
                alert.last_notified_at,
            ),
        )
        return cur.fetchone()[0]


def delete_slo_alert(conn, site: str, severity: str) -> SloAlert | None:
    """End the alert: delete its row and return it (None: none was firing, or another
    evaluator ended it first, so only one of them sends a resolved note). Raises StorageError."""
    with transaction(conn, f"could not end the SLO alert of {site}") as cur:
        cur.execute(_DELETE_ALERT, (site, severity))
        row = cur.fetchone()
    return None if row is None else SloAlert(*row)


def release_slo_alert(conn, site: str, severity: str, claimed_at: datetime) -> bool:
    """Forget that the message claimed at ``claimed_at`` went out (its send failed), so the next
    evaluation that finds the alert still firing sends it again. Returns whether the claim was
    still in force. Raises StorageError."""
    with transaction(conn, f"could not release the SLO alert of {site}") as cur:
        cur.execute(_RELEASE_ALERT, (site, severity, claimed_at))
        return cur.rowcount == 1


def _hour(at: datetime) -> datetime:
    return _aware(at).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _aware(at: datetime) -> datetime:
    """``at``, refused if naive: PostgreSQL would read it in the session's time zone."""
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC), got a naive datetime")
    return at
