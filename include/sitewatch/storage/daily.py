"""The daily rollup of many sites over a range of days: the public status page's 90-day bars
(issue 27).

One query for every site of a page, read from ``site_checks_daily`` alone (a range scan of its
key (site, day, location) per site), summed over locations; ``site_checks`` is never read, so a
page costs the same at any history length. Takes a psycopg 3 connection, imports nothing from
Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import NamedTuple

from sitewatch.storage.schema import transaction


class Day(NamedTuple):
    """One UTC day of one site: final checks outside maintenance (``checks``), how many were up
    (``ups``), and final checks in maintenance (``maint_checks``), summed over locations. A
    tuple: a page of 1,000 sites reads 90,000 of them."""

    checks: int
    ups: int
    maint_checks: int


_DAYS = """
    SELECT site, day, sum(checks)::bigint, sum(ups)::bigint, sum(maint_checks)::bigint
    FROM site_checks_daily
    WHERE site = ANY(%(sites)s::text[]) AND day >= %(first)s AND day <= %(last)s
    GROUP BY site, day
"""


def days_by_site(conn, sites: Sequence[str], first: date, last: date) -> dict[str, dict[date, Day]]:
    """``{site: {day: Day}}`` for ``sites`` from ``first`` to ``last`` inclusive; a day without
    rows is absent, and a site without any. Raises StorageError when PostgreSQL fails."""
    if not sites:
        return {}
    found: dict[str, dict[date, Day]] = {}
    params = {"sites": list(sites), "first": first, "last": last}
    with transaction(conn, "could not read the daily rollup") as cur:
        cur.execute(_DAYS, params)
        rows = cur.fetchall()  # one call: iterating the cursor costs more per row
    for site, day, checks, ups, maint in rows:
        found.setdefault(site, {})[day] = Day(checks, ups, maint)
    return found
