"""The dashboard's reads of ``site_checks``: one row per site, and one site's recent attempts.

Every query walks the primary key (site, scheduled_at, attempt): the site names come from a skip
scan of the daily rollup's key (one index probe per site, instead of reading a table for
DISTINCT), and each site's figures from a LATERAL range scan of its own key range, bounded in time
so that only the newest daily partitions are searched. The 7 and 30 day uptimes come from the
daily rollup ``site_checks_daily``.
Measurements at 10 million rows are in docs/dashboard.md.

Functions take a psycopg 3 connection and ``now`` (so the windows are reproducible in tests) and
import nothing from Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg.rows import class_row

from sitewatch.storage.schema import transaction

RECENT_LIMIT = 200  # attempts listed on a site's page


@dataclass(frozen=True)
class SiteSummary:
    """One site's line in the listing. Windows end at ``now``; uptimes count final attempts only.

    last_*: the latest final attempt (None when the site has none yet).
    checks_*/ups_*: final attempts and how many were up, over 24 h, 7 d and 30 d.
    p50_ms, p95_ms: response-time percentiles of the final attempts of the last 24 h.
    last_error, last_error_detail, last_error_at: the latest attempt (any) with an error, 24 h.
    tls_expires_at: the newest certificate expiry seen in 24 h.
    """

    site: str
    url: str | None
    last_scheduled_at: datetime | None
    last_checked_at: datetime | None
    last_up: bool | None
    last_status_code: int | None
    last_response_time_ms: float | None
    checks_24h: int
    ups_24h: int
    checks_7d: int
    ups_7d: int
    checks_30d: int
    ups_30d: int
    p50_ms: float | None
    p95_ms: float | None
    last_error: str | None
    last_error_detail: str | None
    last_error_at: datetime | None
    tls_expires_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    """One row of ``site_checks`` as a site's page shows it."""

    scheduled_at: datetime
    attempt: int
    final: bool
    checked_at: datetime
    up: bool
    status_code: int | None
    response_time_ms: float | None
    ttfb_ms: float | None
    error: str | None
    error_detail: str | None


# The recursive CTE is a loose index scan: each step asks the primary key for the first site
# after the previous one, so listing 1,000 names costs 1,000 probes whatever the row count. It
# walks the daily rollup, not the partitioned site_checks, whose every daily partition would
# answer each probe; a site is there from its first final attempt on.
_SITE_NAMES = """
    WITH RECURSIVE names AS (
        (SELECT site FROM site_checks_daily ORDER BY site LIMIT 1)
        UNION ALL
        SELECT (SELECT d.site FROM site_checks_daily d WHERE d.site > n.site
                ORDER BY d.site LIMIT 1)
        FROM names n WHERE n.site IS NOT NULL
    )
"""

# Everything after the names CTE; {names} is the CTE (every site, or one).
_SUMMARY = """
    {names}
    SELECT n.site, last.url,
           last.scheduled_at AS last_scheduled_at, last.checked_at AS last_checked_at,
           last.up AS last_up, last.status_code AS last_status_code,
           last.response_time_ms AS last_response_time_ms,
           day.checks_24h, day.ups_24h,
           coalesce(w.checks_7d, 0) AS checks_7d, coalesce(w.ups_7d, 0) AS ups_7d,
           coalesce(w.checks_30d, 0) AS checks_30d, coalesce(w.ups_30d, 0) AS ups_30d,
           day.p50_ms, day.p95_ms,
           err.error AS last_error, err.error_detail AS last_error_detail,
           err.scheduled_at AS last_error_at, day.tls_expires_at
    FROM names n
    LEFT JOIN LATERAL (
        SELECT url, scheduled_at, checked_at, up, status_code, response_time_ms
        FROM site_checks c
        WHERE c.site = n.site AND c.final AND c.scheduled_at <= %(now)s
          -- bounded like the widest window, so only 30 daily partitions are searched
          AND c.scheduled_at > %(now)s - interval '30 days'
        ORDER BY c.scheduled_at DESC, c.attempt DESC LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
        SELECT sum(d.checks) FILTER (WHERE d.day > %(today)s - 7) AS checks_7d,
               sum(d.ups) FILTER (WHERE d.day > %(today)s - 7) AS ups_7d,
               sum(d.checks) AS checks_30d, sum(d.ups) AS ups_30d
        FROM site_checks_daily d
        WHERE d.site = n.site AND d.day > %(today)s - 30 AND d.day <= %(today)s
    ) w ON true
    LEFT JOIN LATERAL (
        SELECT count(*) AS checks_24h, count(*) FILTER (WHERE c.up) AS ups_24h,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY c.response_time_ms) AS p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY c.response_time_ms) AS p95_ms,
               (array_agg(c.tls_expires_at ORDER BY c.scheduled_at DESC)
                   FILTER (WHERE c.tls_expires_at IS NOT NULL))[1] AS tls_expires_at
        FROM site_checks c
        WHERE c.site = n.site AND c.final
          AND c.scheduled_at > %(now)s - interval '24 hours' AND c.scheduled_at <= %(now)s
    ) day ON true
    LEFT JOIN LATERAL (
        SELECT error, error_detail, scheduled_at
        FROM site_checks c
        WHERE c.site = n.site AND c.error IS NOT NULL
          AND c.scheduled_at > %(now)s - interval '24 hours' AND c.scheduled_at <= %(now)s
        ORDER BY c.scheduled_at DESC, c.attempt DESC LIMIT 1
    ) err ON true
    WHERE n.site IS NOT NULL
    ORDER BY n.site
"""
_ONE_NAME = 'WITH names AS (SELECT %(site)s::text COLLATE "C" AS site)'

_RECENT = """
    SELECT scheduled_at, attempt, final, checked_at, up, status_code, response_time_ms, ttfb_ms,
           error, error_detail
    FROM site_checks
    WHERE site = %(site)s AND scheduled_at <= %(now)s
    ORDER BY scheduled_at DESC, attempt DESC
    LIMIT %(limit)s
"""

_SERIES = """
    SELECT scheduled_at, response_time_ms, up
    FROM site_checks
    WHERE site = %(site)s AND final AND scheduled_at > %(since)s AND scheduled_at <= %(now)s
    ORDER BY scheduled_at
    LIMIT %(limit)s
"""


def site_summaries(conn, now: datetime) -> list[SiteSummary]:
    """One ``SiteSummary`` per site that has rows in ``site_checks``, ordered by name.

    Raises StorageError when PostgreSQL fails.
    """
    with transaction(conn, "could not read the site summaries") as cur:
        cur.row_factory = class_row(SiteSummary)
        cur.execute(_SUMMARY.format(names=_SITE_NAMES), _windows(now))
        return cur.fetchall()


def site_summary(conn, site: str, now: datetime) -> SiteSummary | None:
    """The ``SiteSummary`` of one site (the listing's query for one name), None without rows.

    Raises StorageError when PostgreSQL fails.
    """
    with transaction(conn, "could not read the site summary") as cur:
        cur.row_factory = class_row(SiteSummary)
        cur.execute(_SUMMARY.format(names=_ONE_NAME), {**_windows(now), "site": site})
        row = cur.fetchone()
    return row if row is not None and row.url is not None else None


def recent_attempts(conn, site: str, now: datetime, limit: int = RECENT_LIMIT) -> list[Attempt]:
    """The site's latest ``limit`` attempts (every attempt, newest first).

    Raises StorageError when PostgreSQL fails.
    """
    with transaction(conn, "could not read the recent attempts") as cur:
        cur.row_factory = class_row(Attempt)
        cur.execute(_RECENT, {"site": site, "now": now, "limit": limit})
        return cur.fetchall()


def response_series(
    conn, site: str, since: datetime, now: datetime, limit: int = 5000
) -> list[tuple[datetime, float | None, bool]]:
    """(scheduled_at, response_time_ms, up) of the site's final attempts in (since, now], oldest
    first, at most ``limit`` (a 30 s schedule makes 2,880 a day).

    Raises StorageError when PostgreSQL fails.
    """
    with transaction(conn, "could not read the response times") as cur:
        cur.execute(_SERIES, {"site": site, "since": since, "now": now, "limit": limit})
        return cur.fetchall()


def _windows(now: datetime) -> dict:
    # The daily rollup counts UTC days; "7 d" is today and the 6 days before it.
    return {"now": now, "today": now.astimezone(UTC).date()}
