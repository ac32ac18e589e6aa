"""A run's verdict across locations: what each location decided, and the verdict, stored once.

A site checked from several locations (sites-file ``locations`` and ``quorum``) has, for each run,
a row per location and attempt in ``site_checks``; the drain judges the run from what each
location decided and stores the verdict in ``site_verdicts`` (migration 6), keyed by the run, so
that its alert goes out once however often the run is judged (a redelivered batch, two drains).
This module is the SQL of that: ``location_outcomes`` reads the decided locations of runs,
``record_verdict`` stores a verdict unless one is stored, ``undecided_runs`` finds runs that have
checks but no verdict (a drain that stopped midway, a location that reported late) and
``latest_verdicts`` gives the Sites page each site's latest.

Every function takes a psycopg 3 connection, runs in its own transaction
(``schema.transaction``), and imports nothing from Airflow. Reads of ``site_checks`` walk its
primary key (site, scheduled_at, location, attempt), bounded in time so that only the partitions
of the runs asked about are searched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from sitewatch.storage.schema import transaction

UP, DOWN, PARTIAL = "up", "down", "partial"
"""A location's outcome is UP or DOWN; a run's verdict is one of ``VERDICTS``."""
MISSING = "missing"
"""The outcome recorded in a verdict's ``locations`` for a location that decided nothing."""
STALE = "missing, last "
"""The prefix of a silent location's outcome that counted as what it last decided
(``silent_location: keep``): ``missing, last down``, ``missing, last up``."""
VERDICTS = (UP, DOWN, PARTIAL)
"""What ``site_verdicts.verdict`` may hold (its CHECK constraint, migration 6)."""

RunKey = tuple[str, datetime]
"""A run of a site: (site, scheduled_at)."""

# A location decided once any attempt was up (up ends its retries) or its final attempt is
# stored (down, since none was up); one still retrying has neither, and is left out. Grouping by
# the key's first three columns reads each run's rows in index order. The bounds on scheduled_at
# let the planner search only the partitions of the runs' days.
_OUTCOMES = """
    SELECT c.site, c.scheduled_at, c.location,
           CASE WHEN bool_or(c.up) THEN 'up' ELSE 'down' END
    FROM unnest(%(sites)s::text[], %(times)s::timestamptz[]) AS r(site, scheduled_at)
    JOIN site_checks c ON c.site = r.site AND c.scheduled_at = r.scheduled_at
    WHERE c.scheduled_at >= %(first)s AND c.scheduled_at <= %(last)s
    GROUP BY c.site, c.scheduled_at, c.location
    HAVING bool_or(c.up) OR bool_or(c.final)
"""

_RECORD = """
    INSERT INTO site_verdicts (site, scheduled_at, verdict, quorum, locations)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (site, scheduled_at) DO NOTHING
"""

# The distinct runs first (a range scan of each site's key range, in the window's partitions),
# then one probe of site_verdicts' key for each.
_UNDECIDED = """
    SELECT r.site, r.scheduled_at
    FROM (
        SELECT DISTINCT site, scheduled_at FROM site_checks
        WHERE site = ANY(%(sites)s::text[])
          AND scheduled_at >= %(since)s AND scheduled_at < %(before)s
    ) r
    WHERE NOT EXISTS (
        SELECT 1 FROM site_verdicts v WHERE v.site = r.site AND v.scheduled_at = r.scheduled_at
    )
    ORDER BY r.site, r.scheduled_at
"""

# For each run, one backward probe of site_verdicts' key: the site's verdict before it.
_PREVIOUS = """
    SELECT r.site, r.scheduled_at, v.locations
    FROM unnest(%(sites)s::text[], %(times)s::timestamptz[]) AS r(site, scheduled_at)
    CROSS JOIN LATERAL (
        SELECT locations FROM site_verdicts v
        WHERE v.site = r.site AND v.scheduled_at < r.scheduled_at
        ORDER BY v.scheduled_at DESC LIMIT 1
    ) v
"""

# One backward probe of site_verdicts' key per site.
_LATEST = """
    SELECT s.site, v.scheduled_at, v.verdict, v.locations
    FROM unnest(%s::text[]) AS s(site)
    CROSS JOIN LATERAL (
        SELECT scheduled_at, verdict, locations FROM site_verdicts v
        WHERE v.site = s.site ORDER BY v.scheduled_at DESC LIMIT 1
    ) v
"""


def location_outcomes(conn, runs: Sequence[RunKey]) -> dict[RunKey, dict[str, str]]:
    """For each run (site, scheduled_at), its decided locations: location -> UP or DOWN.

    UP when any attempt of the location was up; DOWN when none was and its final attempt is
    stored; a location still retrying, or with no row yet, is left out (so a run nobody decided
    maps to ``{}``). Every run asked about is a key of the result, as given. One query for all
    runs, whatever their number.

    Raises ValueError for a naive ``scheduled_at`` (a bug upstream), StorageError when
    PostgreSQL fails.
    """
    wanted = list(dict.fromkeys(runs))
    outcomes: dict[RunKey, dict[str, str]] = {run: {} for run in wanted}
    if not wanted:
        return outcomes
    times = _aware([at for _, at in wanted])
    params = {
        "sites": [site for site, _ in wanted],
        "times": times,
        "first": min(times),
        "last": max(times),
    }
    with transaction(conn, "could not read the locations' outcomes") as cur:
        cur.execute(_OUTCOMES, params)
        for site, scheduled_at, location, outcome in cur:
            outcomes[(site, scheduled_at)][location] = outcome
    return outcomes


def record_verdict(
    conn,
    site: str,
    scheduled_at: datetime,
    verdict: str,
    quorum: int,
    locations: Mapping[str, str],
) -> bool:
    """Store the verdict of a run unless one is stored; return True if this call stored it.

    verdict: one of ``VERDICTS``. quorum: how many locations had to agree. locations: each
    location's outcome (UP, DOWN or MISSING), stored as a JSON object. The first verdict of a run
    stands: a later call (a redelivered batch, a second judge) changes nothing and returns
    False, so the caller sends the run's alert only on True.

    Raises ValueError for a verdict not in ``VERDICTS`` or a naive ``scheduled_at`` (bugs
    upstream, refused before touching the database), StorageError when PostgreSQL fails.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    (scheduled_at,) = _aware([scheduled_at])
    with transaction(conn, f"could not record the verdict of {site} at {scheduled_at}") as cur:
        cur.execute(_RECORD, (site, scheduled_at, verdict, quorum, Jsonb(dict(locations))))
        return cur.rowcount == 1


def undecided_runs(conn, sites: Sequence[str], since: datetime, before: datetime) -> list[RunKey]:
    """The runs (site, scheduled_at) of ``sites`` with ``since <= scheduled_at < before`` that
    have at least one stored check and no verdict, ordered by site and time.

    Walks each site's range of ``site_checks``' primary key in the window's partitions (never a
    scan of the table), so its cost grows with the window's rows of these sites: keep the window
    short (the runs that may still lack a verdict).

    Raises ValueError for a naive bound, StorageError when PostgreSQL fails.
    """
    if not sites:
        return []
    since, before = _aware([since, before])
    params = {"sites": list(sites), "since": since, "before": before}
    with transaction(conn, "could not read the runs without a verdict") as cur:
        cur.execute(_UNDECIDED, params)
        return cur.fetchall()


def previous_outcomes(conn, runs: Sequence[RunKey]) -> dict[RunKey, dict[str, str]]:
    """For each run, the ``locations`` of its site's latest verdict before it (location ->
    outcome as stored); a run whose site has none before it is left out. One index probe per
    run.

    Raises ValueError for a naive ``scheduled_at``, StorageError when PostgreSQL fails.
    """
    wanted = list(dict.fromkeys(runs))
    if not wanted:
        return {}
    params = {"sites": [site for site, _ in wanted], "times": _aware([at for _, at in wanted])}
    with transaction(conn, "could not read the previous verdicts") as cur:
        cur.execute(_PREVIOUS, params)
        return {(site, at): dict(locations) for site, at, locations in cur}


def latest_verdicts(conn, sites: Sequence[str]) -> dict[str, tuple[datetime, str, dict]]:
    """Each site's latest verdict: site -> (scheduled_at, verdict, locations); sites without
    one are left out. One index probe per site.

    Raises StorageError when PostgreSQL fails.
    """
    if not sites:
        return {}
    with transaction(conn, "could not read the latest verdicts") as cur:
        cur.execute(_LATEST, (list(sites),))
        return {site: (at, verdict, locations) for site, at, verdict, locations in cur}


def _aware(times: list[datetime]) -> list[datetime]:
    """``times``, refused if any is naive: PostgreSQL would read it in the session's time zone."""
    if any(at.tzinfo is None for at in times):
        raise ValueError("scheduled_at must be timezone-aware (UTC), got a naive datetime")
    return times


# The last attempt of each location (the one whose error is the location's word on the run).
_FINAL_ERRORS = """
    SELECT DISTINCT ON (location) location, error, error_detail
    FROM site_checks
    WHERE site = %s AND scheduled_at = %s AND location = ANY(%s::text[])
    ORDER BY location, attempt DESC
"""


def final_errors(
    conn, site: str, scheduled_at: datetime, locations: Sequence[str]
) -> dict[str, str]:
    """location -> ``error: detail`` of its last stored attempt in the run, for ``locations``
    (those that saw the site down), in the order given: what a DOWN message names per location.

    Raises StorageError when PostgreSQL fails.
    """
    if not locations:
        return {}
    with transaction(conn, f"could not read the errors of {site} at {scheduled_at}") as cur:
        cur.execute(_FINAL_ERRORS, (site, scheduled_at, list(locations)))
        found = {loc: f"{error}: {detail}" if detail else str(error) for loc, error, detail in cur}
    return {loc: found[loc] for loc in locations if loc in found}


def run_has_checks(conn, site: str, scheduled_at: datetime, *, final: bool = False) -> bool:
    """Whether any check of the run (any location, any attempt; with ``final``, a final one) is
    stored: one key probe.

    Raises ValueError for a naive ``scheduled_at``, StorageError when PostgreSQL fails.
    """
    (scheduled_at,) = _aware([scheduled_at])
    wanted = " AND final" if final else ""
    with transaction(conn, f"could not look up the checks of {site} at {scheduled_at}") as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM site_checks"
            f" WHERE site = %s AND scheduled_at = %s{wanted})",
            (site, scheduled_at),
        )
        return cur.fetchone()[0]
