"""The reads behind ``/sitewatch/metrics`` (issue 18): each site's latest check per location,
its uptime over 24 h / 7 d / 30 d, and the pipeline's figures, all from small tables.

``site_latest`` (migration 9, kept by the insert trigger) holds one row per site and location:
its latest final attempt and how many attempts were stored; uptimes come from the rollups
(``site_checks_hourly``, whose counts the trigger keeps current too, and ``site_checks_daily``);
rejected messages from ``sitewatch_counters``. Only ``latest_steps`` reads ``site_checks``, by
its key (the rows ``site_latest`` names), so a scrape costs the same at any history length.

Every function takes a psycopg 3 connection, runs in its own transaction (``schema.transaction``,
StorageError on failure) and imports nothing from Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from psycopg.rows import class_row

from sitewatch.storage.schema import transaction
from sitewatch.storage.slo import Tally

WINDOWS = ("24h", "7d", "30d")
"""The uptime windows, as labels: 24 h from the hourly rollup's 24 newest hours (the current one
included), 7 d and 30 d from the daily rollup's newest 7 and 30 UTC days (today included), as the
Sites page counts them."""


@dataclass(frozen=True)
class Latest:
    """One site's latest final attempt from one location (``site_latest``).

    scheduled_at ... error: of that attempt; all None while the location has stored attempts
    but no final one yet. tls_expires_at: the certificate expiry of the newest final attempt
    that saw one, at ``tls_seen_at`` (kept when a later attempt saw none, say a refused
    connection). stored: attempts of any kind stored for it, ever (a counter); stored_at: when
    the newest of them was stored. checks, ups: final attempts outside maintenance and how many
    were up, ever (counters, as uptime and SLOs count: Prometheus's ``rate`` of them gives any
    window's availability).
    """

    site: str
    location: str
    scheduled_at: datetime | None
    checked_at: datetime | None
    up: bool | None
    status_code: int | None
    response_time_ms: float | None
    dns_ms: float | None
    connect_ms: float | None
    tls_ms: float | None
    ttfb_ms: float | None
    error: str | None
    maintenance: bool | None
    tls_expires_at: datetime | None
    tls_seen_at: datetime | None
    stored: int
    stored_at: datetime
    checks: int
    ups: int


@dataclass(frozen=True)
class Pipeline:
    """The drain's figures: the newest stored check (its ``checked_at`` and ``stored_at``; None
    before the first), attempts stored and messages rejected, ever."""

    newest_checked_at: datetime | None
    newest_stored_at: datetime | None
    stored_total: int
    rejected_total: int


_LATEST = f"""
    SELECT {", ".join(f.name for f in fields(Latest))} FROM site_latest
    WHERE %(all)s OR site = ANY(%(sites)s)
    ORDER BY site, location
"""


def latest(conn, sites: Sequence[str] | None = None) -> list[Latest]:
    """The ``site_latest`` rows of ``sites`` (every site when None), by site and location.
    Raises StorageError when PostgreSQL fails."""
    params = {"all": sites is None, "sites": list(sites or ())}
    with transaction(conn, "could not read the latest checks") as cur:
        cur.row_factory = class_row(Latest)
        cur.execute(_LATEST, params)
        return cur.fetchall()


def latest_by_site(conn, sites: Sequence[str]) -> dict[str, list[Latest]]:
    """``latest`` of ``sites`` grouped by site, each site's rows by location; a site without
    rows is left out. Raises StorageError when PostgreSQL fails."""
    grouped: dict[str, list[Latest]] = {}
    for row in latest(conn, sites):
        grouped.setdefault(row.site, []).append(row)
    return grouped


# Per site, a range scan of each rollup's key: 24 rows of the hourly one (per location), 30 of
# the daily one.
_UPTIMES = """
    SELECT s.site, h.checks, h.ups, d.checks_7d, d.ups_7d, d.checks_30d, d.ups_30d
    FROM unnest(%(sites)s::text[]) AS s(site)
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(checks), 0) AS checks, coalesce(sum(ups), 0) AS ups
        FROM site_checks_hourly
        WHERE site = s.site AND hour > %(hour)s - interval '24 hours' AND hour <= %(hour)s
    ) h
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(checks) FILTER (WHERE day > %(today)s - 7), 0) AS checks_7d,
               coalesce(sum(ups) FILTER (WHERE day > %(today)s - 7), 0) AS ups_7d,
               coalesce(sum(checks), 0) AS checks_30d, coalesce(sum(ups), 0) AS ups_30d
        FROM site_checks_daily
        WHERE site = s.site AND day > %(today)s - 30 AND day <= %(today)s
    ) d
"""


def uptimes(conn, sites: Sequence[str], now: datetime) -> dict[str, dict[str, Tally]]:
    """``{site: {window: Tally}}`` for each of ``sites``, summed over its locations: final
    checks outside maintenance in each of ``WINDOWS`` as of ``now``, and how many were up. A
    window without checks is absent, and a site without any. One query for every site.

    Raises ValueError for a naive ``now``, StorageError when PostgreSQL fails.
    """
    if now.tzinfo is None:
        raise ValueError("uptimes needs a timezone-aware now")
    if not sites:
        return {}
    utc = now.astimezone(UTC)
    params = {
        "sites": list(sites),
        "hour": utc.replace(minute=0, second=0, microsecond=0),
        "today": utc.date(),
    }
    with transaction(conn, "could not read the uptimes") as cur:
        cur.execute("SET LOCAL jit = off")  # it costs more than it saves on these small sums
        cur.execute(_UPTIMES, params)
        rows = cur.fetchall()
    found = {}
    for site, *counts in rows:
        tallies = {
            window: Tally(int(checks), int(ups))
            for window, checks, ups in zip(WINDOWS, counts[::2], counts[1::2], strict=True)
            if checks
        }
        if tallies:
            found[site] = tallies
    return found


_PIPELINE = """
    SELECT max(checked_at), max(stored_at), coalesce(sum(stored), 0)::bigint,
           coalesce((SELECT value FROM sitewatch_counters WHERE name = 'rejected'), 0)
    FROM site_latest
"""


def pipeline(conn) -> Pipeline:
    """The pipeline's figures, from ``site_latest`` (every site ever stored, also those no
    longer in the sites file) and ``sitewatch_counters``. Raises StorageError."""
    with transaction(conn, "could not read the pipeline's figures") as cur:
        cur.execute(_PIPELINE)
        checked, stored_at, stored, rejected = cur.fetchone()
    return Pipeline(checked, stored_at, int(stored), int(rejected))


# The final attempt of each (site, location, scheduled_at) by its primary key; the range bound
# lets the planner skip the daily partitions no latest check is in.
_STEPS = """
    SELECT c.site, c.location, c.steps
    FROM unnest(%(sites)s::text[], %(locations)s::text[], %(at)s::timestamptz[])
         AS p(site, location, scheduled_at)
    JOIN site_checks c ON c.site = p.site AND c.location = p.location
         AND c.scheduled_at = p.scheduled_at
    WHERE c.final AND c.steps IS NOT NULL
      AND c.scheduled_at BETWEEN %(first)s AND %(last)s
"""


def latest_steps(conn, rows: Sequence[Latest]) -> dict[tuple[str, str], list[dict]]:
    """The step records (``observation.STEP_FIELDS``) of the latest final attempts ``rows``
    name, by (site, location); a row without a final attempt, or whose check was no flow's, is
    left out. One query; none for no rows. Raises StorageError when PostgreSQL fails."""
    rows = [row for row in rows if row.scheduled_at is not None]
    if not rows:
        return {}
    at = [row.scheduled_at for row in rows]
    params = {
        "sites": [row.site for row in rows],
        "locations": [row.location for row in rows],
        "at": at,
        "first": min(at),
        "last": max(at),
    }
    with transaction(conn, "could not read the latest checks' steps") as cur:
        cur.execute(_STEPS, params)
        return {(site, location): steps for site, location, steps in cur.fetchall()}
