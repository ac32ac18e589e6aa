"""What a public status page says, as plain values: each component's status now, its 90 days,
and the maintenance in force or to come (issue 27).

A site's state is ``dashboard.status.site_state``'s, the same answer as the Sites page, the
metrics and (through the same verdicts) the pager; whether it is in maintenance is
``config.maintenance.maintenance_at``'s, as for held alerts. This module only maps those onto
the statuses of the Atlassian Statuspage model and folds a group's sites into one. Pure functions
of values read elsewhere (``status.read``); nothing here reads a database or imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sitewatch.config.maintenance import Mute, maintenance_at
from sitewatch.config.site import Site
from sitewatch.config.status_pages import Component, StatusPage
from sitewatch.dashboard import status as site_status
from sitewatch.storage.daily import Day
from sitewatch.storage.metrics import WINDOWS, Latest
from sitewatch.storage.slo import Tally

DAYS = 90
HOURS = 24
"""The response-time chart's span, in hours, the current one included."""
UPCOMING = timedelta(days=7)
"""How far ahead maintenance is announced."""

OPERATIONAL = "operational"
DEGRADED = "degraded_performance"
PARTIAL = "partial_outage"
MAJOR = "major_outage"
MAINTENANCE = "under_maintenance"
STATUSES = (OPERATIONAL, DEGRADED, PARTIAL, MAJOR, MAINTENANCE)
"""A component's status, as Statuspage's ``summary.json`` names them."""
LABELS = {
    OPERATIONAL: "Operational",
    DEGRADED: "Degraded performance",
    PARTIAL: "Partial outage",
    MAJOR: "Major outage",
    MAINTENANCE: "Under maintenance",
}
NO_DATA_LABEL = "No recent data"

# A site's state on the Sites page -> its status on a public page. Statuspage knows no "unknown":
# a site without recent checks (stale, no data) reads as degraded, labelled "No recent data".
_SITE_STATUS = {
    site_status.UP: OPERATIONAL,
    site_status.DEGRADED: DEGRADED,
    site_status.PARTIAL: PARTIAL,
    site_status.DOWN: MAJOR,
    site_status.MAINTENANCE: MAINTENANCE,
    site_status.STALE: DEGRADED,
    site_status.NO_DATA: DEGRADED,
}
_UNKNOWN = {site_status.STALE, site_status.NO_DATA}


class DayBar(NamedTuple):
    """One day of a component's bar: final checks outside maintenance, ups, and checks in
    maintenance, summed over its sites. ``uptime`` is None without checks. A tuple: a page of
    1,000 components has 90,000."""

    day: date
    checks: int
    ups: int
    maint_checks: int

    @property
    def uptime(self) -> float | None:
        return self.ups / self.checks if self.checks else None


@dataclass(frozen=True)
class ComponentView:
    """A component as published: its configured texts, ``status`` (one of ``STATUSES``),
    ``label`` (its words on the page), ``position`` (1-based) and ``days`` (oldest first)."""

    slug: str
    name: str
    description: str | None
    status: str
    label: str
    position: int
    days: tuple[DayBar, ...]
    uptimes: Mapping[str, Tally] = field(default_factory=dict)
    """Window (``storage.metrics.WINDOWS``: 24h, 7d, 30d) -> its checks and ups, summed over
    the sites; every window is there, ``Tally(0, 0)`` without checks."""
    response: tuple[tuple[datetime, float | None], ...] = ()
    """Only for a component with ``response_time: true``: (hour, median ms) for each of the
    last ``HOURS`` hours, oldest first, the slowest of its sites'; None where none has one."""


@dataclass(frozen=True)
class MaintenanceView:
    """Maintenance of some components from ``start`` to ``end`` (aware UTC); ``active`` when it
    covers now. No reason and no author: those stay with the operators."""

    start: datetime
    end: datetime
    active: bool
    components: tuple[str, ...]  # slugs, in page order


@dataclass(frozen=True)
class PageView:
    """Everything one page publishes, as of ``now``."""

    id: str
    title: str
    now: datetime
    components: tuple[ComponentView, ...]
    maintenances: tuple[MaintenanceView, ...]
    incidents: tuple = ()
    """The page's open incidents and those of the last ``DAYS`` days, newest first
    (``storage.incidents.Incident``, with their updates)."""

    @property
    def open_incidents(self) -> tuple:
        return tuple(i for i in self.incidents if i.resolved_at is None)

    @property
    def past_incidents(self) -> tuple:
        return tuple(i for i in self.incidents if i.resolved_at is not None)

    @property
    def indicator(self) -> tuple[str, str]:
        """Statuspage's page ``status``: (indicator, description)."""
        statuses = {c.status for c in self.components}
        if MAJOR in statuses:
            return "major", "Major System Outage"
        if PARTIAL in statuses:
            return "minor", "Partial System Outage"
        if DEGRADED in statuses:
            return "minor", "Minor Service Outage"
        if MAINTENANCE in statuses:
            return "maintenance", "Service Under Maintenance"
        return "none", "All Systems Operational"


@dataclass(frozen=True)
class SiteFacts:
    """What the page reads of one site: its configured record (None: no longer in the sites
    file), its ``site_latest`` rows, its latest verdict, its mutes, its days and its uptimes."""

    site: Site | None
    checks: Sequence[Latest]
    verdict: site_status.LatestVerdict | None
    mutes: Sequence[Mute]
    days: Mapping[date, Day]
    uptimes: Mapping[str, Tally] = field(default_factory=dict)
    """``storage.metrics.uptimes``' windows of the site; a window without checks is absent."""
    medians: Mapping[datetime, float] = field(default_factory=dict)
    """Hour -> its median response time (``storage.hourly``); read only for charted sites."""


def site_status_now(facts: SiteFacts, now: datetime) -> tuple[str, bool]:
    """(status, unknown) of one site now: its ``site_state`` mapped onto ``STATUSES``, and
    whether that is for want of recent checks."""
    windows = facts.site.maintenance if facts.site is not None else ()
    held = maintenance_at(windows, facts.mutes, now) is not None
    state, _ = site_status.site_state(facts.site, facts.checks, facts.verdict, held, now)
    return _SITE_STATUS[state], state in _UNKNOWN


def fold(statuses: Sequence[str]) -> str:
    """A group's status from its sites': under maintenance when all are; else, of the others,
    major when all are down, partial when some are down or partial, degraded when one is."""
    live = [s for s in statuses if s != MAINTENANCE]
    if not live:
        return MAINTENANCE
    if all(s == MAJOR for s in live):
        return MAJOR
    if any(s in (MAJOR, PARTIAL) for s in live):
        return PARTIAL
    return DEGRADED if DEGRADED in live else OPERATIONAL


def page_view(page: StatusPage, facts: Mapping[str, SiteFacts], now: datetime) -> PageView:
    """The ``PageView`` of ``page`` from each of its sites' ``facts`` (a site without facts has
    none of its own: no data)."""
    empty = SiteFacts(None, (), None, (), {})
    first = now.date() - timedelta(days=DAYS - 1)
    span = tuple(first + timedelta(days=offset) for offset in range(DAYS))
    components = tuple(
        _component(c, [facts.get(s, empty) for s in c.sites], position, now, span)
        for position, c in enumerate(page.components, 1)
    )
    maintenances = _maintenances(page.components, facts, now)
    return PageView(page.id, page.title, now, components, maintenances)


def _component(
    component: Component,
    facts: Sequence[SiteFacts],
    position: int,
    now: datetime,
    span: Sequence[date],
) -> ComponentView:
    found = [site_status_now(f, now) for f in facts]
    status = fold([s for s, _ in found])
    unknown = status == DEGRADED and all(u for s, u in found if s == DEGRADED)
    label = NO_DATA_LABEL if unknown else LABELS[status]
    days = _days(facts, span)
    uptimes = {
        window: Tally(
            sum(f.uptimes[window].checks for f in facts if window in f.uptimes),
            sum(f.uptimes[window].ups for f in facts if window in f.uptimes),
        )
        for window in WINDOWS
    }
    return ComponentView(
        component.slug, component.name, component.description, status, label, position,
        days, uptimes, _response(facts, now) if component.response_time else (),
    )  # fmt: skip


def _days(facts: Sequence[SiteFacts], span: Sequence[date]) -> tuple[DayBar, ...]:
    """A bar per day of ``span``, summed over the sites (a page of 1,000 components makes
    90,000): a site's own days as they are, a group's added up in one pass over each site's."""
    if len(facts) == 1:
        counts = facts[0].days  # Day: (checks, ups, maint_checks), as DayBar has them
    else:
        counts = {}
        for f in facts:
            for day, c in f.days.items():
                checks, ups, maint = counts.get(day, _NONE)
                counts[day] = (checks + c.checks, ups + c.ups, maint + c.maint_checks)
    return tuple(DayBar(day, *counts.get(day, _NONE)) for day in span)


_NONE = (0, 0, 0)


def first_hour(now: datetime) -> datetime:
    """The oldest hour of the chart: ``HOURS - 1`` hours before the current one (UTC)."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return current - timedelta(hours=HOURS - 1)


def _response(facts: Sequence[SiteFacts], now: datetime) -> tuple:
    hours = [first_hour(now) + timedelta(hours=k) for k in range(HOURS)]
    return tuple(
        (hour, max((f.medians[hour] for f in facts if hour in f.medians), default=None))
        for hour in hours
    )


def _maintenances(
    components: Sequence[Component], facts: Mapping[str, SiteFacts], now: datetime
) -> tuple[MaintenanceView, ...]:
    """Each span of maintenance in force now or starting within ``UPCOMING``, with the
    components whose sites it covers; spans that start and end together are one."""
    spans: dict[tuple[datetime, datetime], list[str]] = {}
    for component in components:
        for name in component.sites:
            site_facts = facts.get(name)
            if site_facts is None:
                continue
            for span in _site_spans(site_facts, now):
                slugs = spans.setdefault(span, [])
                if component.slug not in slugs:
                    slugs.append(component.slug)
    return tuple(
        MaintenanceView(start, end, start <= now < end, tuple(slugs))
        for (start, end), slugs in sorted(spans.items())
    )


def _site_spans(facts: SiteFacts, now: datetime) -> list[tuple[datetime, datetime]]:
    windows = facts.site.maintenance if facts.site is not None else ()
    found = []
    held = maintenance_at(windows, facts.mutes, now)
    if held is not None:
        found.append((held.since, held.until))
    for window in windows:
        start = window.next_start(now)
        if start is not None and start < now + UPCOMING:
            end = start + window.duration if window.cron is not None else window.end
            found.append((start, end))
    found += [(m.starts_at, m.ends_at) for m in facts.mutes if now < m.starts_at < now + UPCOMING]
    return found
