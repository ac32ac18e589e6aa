"""What the dashboard says about a site: its state now and its figures, as text.

A site's state is ``site_state``'s alone, for the Sites page, a site's page and the metrics
alike: a function of each location's latest final check (``site_latest``), for a site checked
from several locations its latest verdict, and ``now``. The figures are plain functions of a
``SiteSummary`` and ``now``. Nothing here reads the database or imports Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sitewatch.config.crontime import next_fire
from sitewatch.config.objectives import slow
from sitewatch.config.site import Site
from sitewatch.storage import verdicts
from sitewatch.storage.metrics import Latest
from sitewatch.storage.queries import LocationCheck, Run, RunLocation

MIN_STALE_AFTER = timedelta(minutes=15)
STALE_INTERVALS = 3
# A cron schedule is measured by two consecutive fire times from this instant: any fixed instant
# works for regular expressions, and a fixed one keeps the threshold stable between page loads.
_CRON_ORIGIN = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)

UP, DOWN, STALE, NO_DATA = "up", "down", "stale", "no data"
PARTIAL = "partial"
"""A run some locations saw down, fewer than the quorum (``sitewatch.alerting.quorum``)."""
MISSING, RETRYING = "missing", "retrying"
"""A location with nothing decided: none stored (in the window or the run), or still retrying."""
MAINTENANCE = "maintenance"
"""A site in a maintenance window now (the sites file's or an ad-hoc mute), whatever its checks
say: they still run, and alerts are held (``dashboard.maintenance``)."""
DEGRADED = "degraded"
"""Up, but its latest up check was slower than its ``degraded_ms``."""

_VERDICT_STATES = {verdicts.UP: UP, verdicts.DOWN: DOWN, verdicts.PARTIAL: PARTIAL}

LatestVerdict = tuple[datetime, str, Mapping[str, str]]
"""A run's verdict as ``storage.verdicts.latest_verdicts`` gives it: (scheduled_at, verdict,
each location's outcome)."""


def schedule_interval(schedule: timedelta | str | None) -> timedelta | None:
    """The time between two runs of a site's schedule (an interval, or a 5-field cron string).

    None when unknown (a site no longer in the sites file). For cron, the gap between its first
    two fire times after a fixed instant, which is exact for regular expressions like
    ``*/10 * * * *`` and a fair estimate for irregular ones.
    """
    if schedule is None or isinstance(schedule, timedelta):
        return schedule
    first = next_fire(schedule, "UTC", _CRON_ORIGIN)
    return next_fire(schedule, "UTC", first) - first


def stale_after(schedule: timedelta | str | None) -> timedelta:
    """How old the last final check may be before the site is shown stale.

    Three schedule intervals (a run plus its retries can take most of one), but never less than
    15 minutes, so a 30 s schedule is not flagged stale by one slow run or a drain hiccup.
    """
    interval = schedule_interval(schedule)
    if interval is None:
        return MIN_STALE_AFTER
    return max(STALE_INTERVALS * interval, MIN_STALE_AFTER)


def site_state(
    site: Site | None,
    checks: Sequence[Latest],
    verdict: LatestVerdict | None,
    maintenance: bool,
    now: datetime,
) -> tuple[str, bool | None]:
    """A site's (state, latest final verdict) now: the one answer of the Sites page, a site's
    page and ``/sitewatch/metrics``.

    site: the configured site; None for one no longer in the sites file (its checks are still
    shown: one location's rules, no ``degraded_ms``, ``stale`` after ``MIN_STALE_AFTER``).
    checks: its ``site_latest`` rows (``storage.metrics.latest``), one per location. verdict:
    its latest verdict across locations, read only for a site checked from several. maintenance:
    whether it is in a window now (``config.maintenance.maintenance_at``); the pages pass False
    and show the window's badge over the state.

    The state is ``maintenance`` while in a window; else ``up``/``down`` from the newest final
    check (several locations: ``up``/``partial``/``down`` from the runs' verdict), ``stale`` when
    that is older than ``stale_after``, ``no data`` before the first; and ``degraded`` when it is
    up but a location's latest check was up and slower than the site's ``degraded_ms``. The
    verdict is None before the first; ``partial`` counts as up (fewer locations saw it down than
    its quorum).
    """
    schedule = site.schedule if site is not None else None
    decided = [c for c in checks if c.scheduled_at is not None]
    if site is not None and site.several_locations:
        state = verdict_state(verdict, schedule, now)
        up = None if verdict is None else verdict[1] != verdicts.DOWN
    elif decided:
        newest = max(decided, key=lambda c: (c.scheduled_at, c.location))
        stale = now - newest.scheduled_at > stale_after(schedule)
        state, up = STALE if stale else UP if newest.up else DOWN, newest.up
    else:
        state, up = NO_DATA, None
    if maintenance:
        return MAINTENANCE, up
    limit = site.degraded_ms if site is not None else None
    if state == UP and any(c.up and slow(limit, c.response_time_ms) for c in decided):
        return DEGRADED, up
    return state, up


def verdict_state(
    verdict: LatestVerdict | None, schedule: timedelta | str | None, now: datetime
) -> str:
    """A site checked from several locations: ``up``/``partial``/``down`` from its latest
    verdict, ``stale`` when that run is older than ``stale_after``, ``no data`` before the first
    (a verdict waits for every location, or the run's deadline; one location never decides)."""
    if verdict is None:
        return NO_DATA
    scheduled_at, decided, _ = verdict
    if now - scheduled_at > stale_after(schedule):
        return STALE
    return verdict_badge(decided)


def verdict_badge(verdict: str) -> str:
    """The state a stored verdict shows as (``up``/``partial``/``down``); ``no data`` for any
    other text, which the table's CHECK constraint does not let in."""
    return _VERDICT_STATES.get(verdict, NO_DATA)


def location_state(
    check: LocationCheck | None, schedule: timedelta | str | None, now: datetime
) -> str:
    """A location's cell in the listing: ``up``/``down`` from its latest decided attempt,
    ``stale`` when that is older than ``stale_after``, ``missing`` without one."""
    if check is None:
        return MISSING
    if now - check.scheduled_at > stale_after(schedule):
        return STALE
    return UP if check.up else DOWN


def run_state(part: RunLocation | None) -> str:
    """A location's cell in a run: ``up`` (an attempt was up), ``down`` (its final attempt was
    down), ``retrying`` (attempts stored, none decided yet) or ``missing`` (none stored)."""
    if part is None:
        return MISSING
    if part.up:
        return UP
    return DOWN if part.final else RETRYING


@dataclass(frozen=True)
class LocationsView:
    """What the listing shows of a site checked from several locations.

    cells: (location, state, its latest decided check or None), in the site's order.
    verdict: the latest verdict, None before the first. quorum: the site's configured quorum.
    """

    cells: tuple[tuple[str, str, LocationCheck | None], ...]
    verdict: LatestVerdict | None
    quorum: int


def locations_view(
    locations: Sequence[str],
    quorum: int,
    latest: Mapping[str, LocationCheck],
    verdict: LatestVerdict | None,
    schedule: timedelta | str | None,
    now: datetime,
) -> LocationsView:
    """The ``LocationsView`` of a site from its configured ``locations`` and ``quorum``, each
    location's latest decided check (``queries.latest_by_location``) and its latest verdict."""
    cells = tuple(
        (loc, location_state(latest.get(loc), schedule, now), latest.get(loc)) for loc in locations
    )
    return LocationsView(cells, verdict, quorum)


@dataclass(frozen=True)
class SiteLocations:
    """What a site's page shows of a site checked from several locations: its configured
    ``locations`` and ``quorum``, and its recent ``runs`` (``queries.recent_runs``). Only such a
    site has one (``Site.several_locations``); a page without it is of a single-location site."""

    locations: tuple[str, ...]
    quorum: int
    runs: Sequence[Run]


SORTS = ("name", "status", "budget", "burn")
"""The listing's orders (``?sort=``): by name; worst state first; least error budget left first;
fastest burn first. Sites without the figure (no SLO, no checks) go last, by name."""
_STATE_RANK = {DOWN: 0, PARTIAL: 1, DEGRADED: 2, STALE: 3, MAINTENANCE: 4, NO_DATA: 5, UP: 6}


def sort_key(by: str, name: str, state: str, left: float | None, burn: float | None) -> tuple:
    """The key of a listing row for the order ``by`` (one of ``SORTS``; ValueError otherwise).

    state: as shown (``MAINTENANCE`` while in a window). left: the fraction of the error budget
    left; burn: the listing's burn rate; either None without an SLO or checks.
    """
    if by == "name":
        return (name,)
    if by == "status":
        return (_STATE_RANK.get(state, len(_STATE_RANK)), name)
    if by == "budget":
        return (left is None, left or 0.0, name)
    if by == "burn":
        return (burn is None, -(burn or 0.0), name)
    raise ValueError(f"sort {by!r}: expected one of {', '.join(SORTS)}")


def uptime(ups: int, checks: int) -> str:
    """Percentage with two decimals ("99.95%"), floored so 1 failure in 10,000 never shows 100%;
    an em dash without checks."""
    if not checks:
        return "—"
    basis_points = ups * 10_000 // checks
    return f"{basis_points // 100}.{basis_points % 100:02d}%"


def milliseconds(value: float | None) -> str:
    """Whole milliseconds ("123 ms"), or an em dash."""
    return "—" if value is None else f"{value:,.0f} ms"


def days_left(expires_at: datetime | None, now: datetime) -> int | None:
    """Whole days until a certificate expires (negative once expired), None when unknown."""
    if expires_at is None:
        return None
    return (expires_at - now) // timedelta(days=1)


def budget_percent(left: float) -> str:
    """The fraction of an error budget left as a percentage with two decimals, as ``uptime``
    writes every percentage of the pages, floored like it so a budget barely touched never shows
    100.00% ("99.95%", "-12.40%")."""
    # the fraction is a float: 1 - 0.3 is 0.6999..., which must not floor to 69.99%
    hundredths = math.floor(left * 10_000 + 1e-6)
    return f"{'-' if hundredths < 0 else ''}{abs(hundredths) // 100}.{abs(hundredths) % 100:02d}%"


def error_text(error: str | None, detail: str | None) -> str:
    """A check's error as every page writes it: its kind, then what went wrong
    ("status: status 503 not in 200-399"); the kind alone without a detail, "" without an
    error."""
    if not error:
        return ""
    return f"{error}: {detail}" if detail else error


def minutes(value: float) -> str:
    """Minutes of downtime with one decimal ("43.2 min", "-5.0 min")."""
    return f"{value:,.1f} min"


def burn_rate(rate: float) -> str:
    """A burn rate as a factor ("0.4x", "14.4x"; "∞x" for a target of 100 with a failure)."""
    return "∞x" if math.isinf(rate) else f"{rate:,.1f}x"


def age(then: datetime | None, now: datetime) -> str:
    """How long ago, coarsely: "42 s ago", "5 min ago", "3 h ago", "2 d ago"; em dash if None."""
    if then is None:
        return "—"
    seconds = max(int((now - then).total_seconds()), 0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
