"""Read what a status page shows: a few queries for all of a page's sites, none of them on
``site_checks`` (``site_latest``, ``site_verdicts``, ``site_mutes``, ``site_checks_daily``,
``site_checks_hourly``, ``status_incidents``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta

from sitewatch.config.status_pages import StatusPage
from sitewatch.status.model import DAYS, UPCOMING, PageView, SiteFacts, first_hour, page_view
from sitewatch.storage import metrics
from sitewatch.storage.daily import days_by_site
from sitewatch.storage.hourly import medians_by_site
from sitewatch.storage.incidents import page_incidents
from sitewatch.storage.mutes import mutes_overlapping
from sitewatch.storage.verdicts import latest_verdicts


def read_page(conn, page: StatusPage, configured: Mapping, now: datetime) -> PageView:
    """The ``PageView`` of ``page`` as of ``now`` (aware). ``configured``: site name -> ``Site``
    of the sites file (a site no longer there is shown from its checks alone). Raises
    StorageError when PostgreSQL fails."""
    names = sorted({name for c in page.components for name in c.sites})
    several = [n for n in names if n in configured and configured[n].several_locations]
    latest = metrics.latest_by_site(conn, names)
    verdicts = latest_verdicts(conn, several)
    mutes = mutes_overlapping(conn, names, now, now + UPCOMING)
    first = now.date() - timedelta(days=DAYS - 1)
    days = days_by_site(conn, names, first, now.date())
    uptimes = metrics.uptimes(conn, names, now)
    charted = sorted({name for c in page.components if c.response_time for name in c.sites})
    medians = medians_by_site(conn, charted, first_hour(now), now)
    facts = {
        name: SiteFacts(
            configured.get(name),
            latest.get(name, ()),
            verdicts.get(name),
            mutes.get(name, ()),
            days.get(name, {}),
            uptimes.get(name, {}),
            medians.get(name, {}),
        )
        for name in names
    }
    incidents = page_incidents(conn, page.id, now - timedelta(days=DAYS))
    return dataclasses.replace(page_view(page, facts, now), incidents=tuple(incidents))
