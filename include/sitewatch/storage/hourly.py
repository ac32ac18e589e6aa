"""The hourly rollup's response times of many sites: the public status page's 24-hour charts
(issue 27).

One query for every charted site of a page, read from ``site_checks_hourly`` alone (a range scan
of its key (site, hour, location) per site). A site checked from several locations gets, per
hour, the slowest location's median: the chart shows what the worst-served readers saw. Takes a
psycopg 3 connection, imports nothing from Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sitewatch.storage.schema import transaction

_MEDIANS = """
    SELECT site, hour, max(p50_ms)
    FROM site_checks_hourly
    WHERE site = ANY(%(sites)s::text[]) AND hour >= %(first)s AND hour <= %(last)s
      AND p50_ms IS NOT NULL
    GROUP BY site, hour
"""


def medians_by_site(
    conn, sites: Sequence[str], first: datetime, last: datetime
) -> dict[str, dict[datetime, float]]:
    """``{site: {hour: ms}}``: each hour's median response time from ``first`` to ``last``
    inclusive (the slowest location's). An hour whose percentiles maintenance has not computed
    yet (``retention.refresh_hourly``) is absent, and so is a site without any. Raises
    StorageError when PostgreSQL fails."""
    if not sites:
        return {}
    found: dict[str, dict[datetime, float]] = {}
    params = {"sites": list(sites), "first": first, "last": last}
    with transaction(conn, "could not read the hourly response times") as cur:
        cur.execute(_MEDIANS, params)
        for site, hour, ms in cur:
            found.setdefault(site, {})[hour] = float(ms)
    return found
