"""The dashboard's reads of ``site_checks``: one row per site, and one site's recent attempts;
for a site checked from several locations, each location's latest check and the recent runs.

Every query walks the primary key (site, scheduled_at, location, attempt): the site names come
from a skip scan of the daily rollup's key (one index probe per site, instead of reading a table
for DISTINCT), and each site's figures from a LATERAL range scan of its own key range, bounded in
time so that only the newest daily partitions are searched. The 7 and 30 day uptimes come from the
daily rollup ``site_checks_daily``. A site checked from several locations has a row per location
and attempt: its figures count the final attempts of every location (sums over locations), and
"latest" means the latest run, its last location in key order breaking the tie.
Measurements at 10 million rows are in docs/dashboard.md.

Functions take a psycopg 3 connection and ``now`` (so the windows are reproducible in tests) and
import nothing from Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg.rows import class_row

from sitewatch.names import LOCAL_LOCATION
from sitewatch.storage.schema import transaction

RECENT_LIMIT = 200  # attempts listed on a site's page
RUNS_LIMIT = 24  # runs in a site's location matrix


@dataclass(frozen=True)
class SiteSummary:
    """One site's line in the listing. Windows end at ``now``; uptimes count final attempts only,
    outside maintenance windows.

    last_*: the latest final attempt (None when the site has none yet), in maintenance or not.
    checks_*/ups_*: final attempts outside maintenance and how many were up, over 24 h, 7 d
    and 30 d.
    p50_ms, p95_ms: response-time percentiles of the final attempts of the last 24 h outside
    maintenance.
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
    """One row of ``site_checks`` as a site's page shows it; ``maintenance``: scheduled in a
    maintenance window (stored with the row), so not counted in uptime and its alerts held."""

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
    location: str = LOCAL_LOCATION
    maintenance: bool = False
    tls_version: str | None = None
    steps: list | None = None  # a flow's step records (observation.STEP_FIELDS); None otherwise


@dataclass(frozen=True)
class LocationCheck:
    """A location's latest decided attempt at a site, for the listing's location cells.

    Decided: an up attempt (being up ends the location's retries, final or not) or the final one.
    checked_at, up, error, error_detail: of that attempt.
    """

    site: str
    location: str
    scheduled_at: datetime
    checked_at: datetime
    up: bool
    error: str | None
    error_detail: str | None


@dataclass(frozen=True)
class RunLocation:
    """What one location did in one run of a site (a cell of a site page's location matrix).

    up: an attempt was up. final: its final attempt is stored (neither: it is still retrying).
    attempts: how many are stored. checked_at, error, error_detail: of its latest attempt.
    """

    location: str
    up: bool
    final: bool
    attempts: int
    checked_at: datetime
    error: str | None
    error_detail: str | None


@dataclass(frozen=True)
class Run:
    """One run of a site: the part of each location with stored attempts (a location without
    any is absent), and the run's verdict, quorum and each location's outcome in it from
    ``site_verdicts`` (None: undecided)."""

    scheduled_at: datetime
    locations: Mapping[str, RunLocation]
    verdict: str | None
    quorum: int | None
    outcomes: Mapping[str, str] | None = None


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
        ORDER BY c.scheduled_at DESC, c.location DESC, c.attempt DESC LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
        SELECT sum(d.checks) FILTER (WHERE d.day > %(today)s - 7) AS checks_7d,
               sum(d.ups) FILTER (WHERE d.day > %(today)s - 7) AS ups_7d,
               sum(d.checks) AS checks_30d, sum(d.ups) AS ups_30d
        FROM site_checks_daily d
        WHERE d.site = n.site AND d.day > %(today)s - 30 AND d.day <= %(today)s
    ) w ON true
    LEFT JOIN LATERAL (
        -- maintenance left out, as the rollups leave it out of the 7 and 30 days (migration 8)
        SELECT count(*) FILTER (WHERE NOT c.maintenance) AS checks_24h,
               count(*) FILTER (WHERE c.up AND NOT c.maintenance) AS ups_24h,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY c.response_time_ms)
                   FILTER (WHERE NOT c.maintenance) AS p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY c.response_time_ms)
                   FILTER (WHERE NOT c.maintenance) AS p95_ms,
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
        ORDER BY c.scheduled_at DESC, c.location DESC, c.attempt DESC LIMIT 1
    ) err ON true
    WHERE n.site IS NOT NULL
    ORDER BY n.site
"""
_ONE_NAME = 'WITH names AS (SELECT %(site)s::text COLLATE "C" AS site)'

_RECENT = """
    SELECT scheduled_at, attempt, final, checked_at, up, status_code, response_time_ms, ttfb_ms,
           error, error_detail, location, maintenance, tls_version, steps
    FROM site_checks
    WHERE site = %(site)s AND scheduled_at <= %(now)s
    ORDER BY scheduled_at DESC, location DESC, attempt DESC
    LIMIT %(limit)s
"""

_SERIES = """
    SELECT scheduled_at, response_time_ms, up, maintenance
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
) -> list[tuple[datetime, float | None, bool, bool]]:
    """(scheduled_at, response_time_ms, up, maintenance) of the site's final attempts in
    (since, now], oldest first, at most ``limit`` (a 30 s schedule makes 2,880 a day).

    Raises StorageError when PostgreSQL fails.
    """
    with transaction(conn, "could not read the response times") as cur:
        cur.execute(_SERIES, {"site": site, "since": since, "now": now, "limit": limit})
        return cur.fetchall()


# One backward probe of the primary key per (site, location). The key is (site, scheduled_at,
# location, attempt): the location is checked on the index entries (no heap visit for another
# location's rows), and the scan stops at the location's first decided attempt, a few entries
# back when every location reports. Bounded like the summary's latest check, so only the last 30
# daily partitions are searched; a location that never reported costs one pass over the site's
# index entries of that window. EXPLAIN ANALYZE at 599,000 rows (100 sites x 3 locations and
# 300 single-location sites, 1,000 runs each): 300 (site, location) pairs in 2-4 ms, 1,301
# buffers; a DISTINCT ON over the same rows sorts 299,000 of them (0.5 s).
_LATEST_BY_LOCATION = """
    SELECT p.site, p.location, c.scheduled_at, c.checked_at, c.up, c.error, c.error_detail
    FROM unnest(%(sites)s::text[], %(locations)s::text[]) AS p(site, location)
    CROSS JOIN LATERAL (
        SELECT scheduled_at, checked_at, up, error, error_detail
        FROM site_checks c
        WHERE c.site = p.site AND c.location = p.location AND (c.final OR c.up)
          AND c.scheduled_at <= %(now)s AND c.scheduled_at > %(now)s - interval '30 days'
        ORDER BY c.scheduled_at DESC, c.location DESC, c.attempt DESC LIMIT 1
    ) c
"""

# The site's latest runs (distinct scheduled_at of a backward walk of its key range, index
# only), then each run's rows grouped by location (the key's next column, one index range per
# run) and its verdict (a merge with site_verdicts' key). The time bounds repeat in the LATERAL
# so that the planner, not each loop, prunes the partitions.
_RUNS = """
    WITH runs AS (
        SELECT DISTINCT scheduled_at FROM site_checks
        WHERE site = %(site)s AND scheduled_at <= %(now)s
          AND scheduled_at > %(now)s - interval '30 days'
        ORDER BY scheduled_at DESC LIMIT %(limit)s
    )
    SELECT r.scheduled_at, c.location, c.up, c.final, c.attempts, c.checked_at, c.error,
           c.error_detail, v.verdict, v.quorum, v.locations
    FROM runs r
    CROSS JOIN LATERAL (
        SELECT c.location, bool_or(c.up) AS up, bool_or(c.final) AS final, count(*) AS attempts,
               max(c.checked_at) AS checked_at,
               (array_agg(c.error ORDER BY c.attempt DESC))[1] AS error,
               (array_agg(c.error_detail ORDER BY c.attempt DESC))[1] AS error_detail
        FROM site_checks c
        WHERE c.site = %(site)s AND c.scheduled_at = r.scheduled_at
          AND c.scheduled_at <= %(now)s AND c.scheduled_at > %(now)s - interval '30 days'
        GROUP BY c.location
    ) c
    LEFT JOIN site_verdicts v ON v.site = %(site)s AND v.scheduled_at = r.scheduled_at
    ORDER BY r.scheduled_at DESC, c.location
"""


def latest_by_location(
    conn, sites: Mapping[str, Sequence[str]], now: datetime
) -> dict[str, dict[str, LocationCheck]]:
    """Each location's latest decided attempt (``LocationCheck``) of the last 30 days.

    sites: site name -> its locations (the listing asks only for sites with several). Returns
    site -> location -> check; a location without a decided attempt in the window is absent,
    and so is a site without any. One query for all of them.

    Raises StorageError when PostgreSQL fails.
    """
    pairs = [(site, location) for site, locations in sites.items() for location in locations]
    found: dict[str, dict[str, LocationCheck]] = {}
    if not pairs:
        return found
    params = {"sites": [s for s, _ in pairs], "locations": [loc for _, loc in pairs], "now": now}
    with transaction(conn, "could not read the locations' latest checks") as cur:
        cur.row_factory = class_row(LocationCheck)
        cur.execute(_LATEST_BY_LOCATION, params)
        for check in cur:
            found.setdefault(check.site, {})[check.location] = check
    return found


def recent_runs(conn, site: str, now: datetime, limit: int = RUNS_LIMIT) -> list[Run]:
    """The site's latest ``limit`` runs of the last 30 days, newest first, each with what every
    location stored and the verdict (``Run``). One query.

    Raises StorageError when PostgreSQL fails.
    """
    params = {"site": site, "now": now, "limit": limit}
    with transaction(conn, "could not read the recent runs") as cur:
        cur.execute(_RUNS, params)
        rows = cur.fetchall()
    runs: dict[datetime, Run] = {}
    for at, location, *part, verdict, quorum, outcomes in rows:
        run = runs.setdefault(at, Run(at, {}, verdict, quorum, outcomes))
        run.locations[location] = RunLocation(location, *part)
    return list(runs.values())


def _windows(now: datetime) -> dict:
    # The daily rollup counts UTC days; "7 d" is today and the 6 days before it.
    return {"now": now, "today": now.astimezone(UTC).date()}
