"""The Sites page's SLO figures: ``storage.slo``'s counts, worked out with ``alerting.slo``, as
the dashboard's ``Budget`` (listing) and ``SiteBudget`` (a site's page).

Here because this layer may import both: the dashboard draws the figures but may not import
the alerting layer that owns their arithmetic. The listing costs three queries for every site
with an ``slo`` together, whatever their number (availability from the hourly rollup, the burn
counts over each site's own ``burn_window``, the firing alerts); a site's page five. Each
statement stops after ``SITEWATCH_QUERY_TIMEOUT_SECONDS`` (``storage.timeouts``): a page load
runs in the API server's shared thread pool, and past the limit it shows the results as
unavailable (StorageError) instead of holding a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sitewatch.alerting import slo as arithmetic
from sitewatch.config.objectives import Slo
from sitewatch.dashboard.budget import Budget, RuleBurn, SiteBudget, burn_window
from sitewatch.storage import slo as store
from sitewatch.storage.slo import SloAlert, Tally
from sitewatch.storage.timeouts import query_timeout

_NONE = Tally(0, 0)


def budgets(
    conn, sites: Mapping[str, object], now: datetime, burn: bool = True
) -> dict[str, Budget]:
    """The ``Budget`` of each of ``sites`` (name -> ``Site``) that has an ``slo``, as of ``now``.

    burn: read the burn rates too (raw checks of each site's own ``burn_window``); without them
    the figures come from the rollup and ``site_slo_alerts`` alone, and ``Budget.burn`` is None.
    Raises StorageError when PostgreSQL fails or a statement passes the timeout, SettingError
    when ``SITEWATCH_QUERY_TIMEOUT_SECONDS`` is unusable.
    """
    objectives = {name: site.slo for name, site in sites.items() if site.slo is not None}
    if not objectives:
        return {}
    timeout = query_timeout()
    windows = {name: slo.window for name, slo in objectives.items()}
    tallies = store.availability(conn, windows, now, timeout=timeout)
    lengths = {name: burn_window(slo) for name, slo in objectives.items()}
    counts = (
        store.burn_counts(
            conn, {name: [length] for name, length in lengths.items()}, now, timeout=timeout
        )
        if burn
        else {}
    )
    alerts = store.slo_alerts(conn, list(objectives), timeout=timeout)
    return {
        name: _budget(
            slo,
            tallies.get(name, _NONE),
            counts.get(name, {}).get(lengths[name], _NONE),
            lengths[name],
            _firing(alerts, name),
        )
        for name, slo in objectives.items()
    }


def site_budget(conn, name: str, slo: Slo, now: datetime) -> SiteBudget:
    """The ``SiteBudget`` of site ``name`` with objective ``slo``, as of ``now``.

    Trade-off: the p95 sorts the raw checks of the whole window (43,200 for 30 days at one a
    minute): fine for one site's page, which is why the listing does not show it.
    Raises StorageError when PostgreSQL fails or a statement passes the timeout, SettingError
    when ``SITEWATCH_QUERY_TIMEOUT_SECONDS`` is unusable.
    """
    timeout = query_timeout()
    window = {name: slo.window}
    tally = store.availability(conn, window, now, timeout=timeout).get(name, _NONE)
    p95 = store.latency_p95(conn, window, now, timeout=timeout).get(name)
    length = burn_window(slo)
    lengths = {name: arithmetic.burn_lengths(slo) | {length}}
    counts = store.burn_counts(conn, lengths, now, timeout=timeout).get(name, {})
    alerts = store.slo_alerts(conn, [name], timeout=timeout)
    days = store.daily_tallies(conn, name, *arithmetic.window_days(slo, now), timeout=timeout)
    firing = _firing(alerts, name)
    rules = tuple(
        RuleBurn(b.rule, b.long, b.short, b.firing, alerts.get((name, b.rule.severity)))
        for b in arithmetic.evaluate(slo, counts)
    )
    return SiteBudget(
        budget=_budget(slo, tally, counts.get(length, _NONE), length, firing),
        attainment=arithmetic.attainment(tally),
        p95_ms=p95,
        latency_met=arithmetic.latency_met(p95, slo),
        rules=rules,
        series=tuple(arithmetic.budget_series(days, slo)),
    )


def _budget(
    slo: Slo, tally: Tally, recent: Tally, length: timedelta, alerts: tuple[SloAlert, ...]
) -> Budget:
    return Budget(
        slo=slo,
        tally=tally,
        left=arithmetic.budget_left(tally, slo),
        minutes=arithmetic.minutes_left(tally, slo),
        burn=arithmetic.burn_rate(recent.bad, recent.checks, slo),
        burn_window=length,
        alerts=alerts,
    )


def _firing(alerts: Mapping[tuple[str, str], SloAlert], name: str) -> tuple[SloAlert, ...]:
    """The site's firing alerts, pages before warnings."""
    return tuple(sorted((a for a in alerts.values() if a.site == name), key=lambda a: a.severity))
