"""The error budget on the dashboard: the listing's "Budget left" and "Burn" cells, and a site's
SLO section with the chart of its budget over the window.

The figures arrive computed (``Budget``, ``SiteBudget``): ``sitewatch.web.slo_figures``
reads them with ``storage.slo`` and works them out with ``alerting.slo``, which this layer may
not import. What counts is the SLO's: final checks outside maintenance, every location's own.
Nothing here reads the database or imports Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape

from sitewatch.config.objectives import DEFAULT_BURN_RULES, BurnRule, Slo
from sitewatch.config.schedule import format_duration
from sitewatch.dashboard import status
from sitewatch.dashboard.html import timestamp
from sitewatch.storage.slo import SloAlert, Tally

NO_SLO = "-"


def burn_window(slo: Slo) -> timedelta:
    """The window of the listing's burn rate: the shortest long window of ``slo``'s rules (1 h
    with the defaults), or of the default rules when it has none. A rule's short windows (5 min)
    swing too much to read at a glance; its long one is what a page is judged on."""
    return min(rule.long for rule in slo.burn or DEFAULT_BURN_RULES)


@dataclass(frozen=True)
class Budget:
    """A site's error budget as the listing shows it.

    tally: its checks and ups over the SLO's window (hourly rollup: the window's hours up to
    now's, that one included). left: the fraction of the budget left (below 0 overspent),
    minutes: the downtime left in minutes; both None without checks. burn: the burn rate over
    ``burn_window`` (raw checks; None without any, or when not read). alerts: its burn-rate
    alerts firing (``site_slo_alerts``).
    """

    slo: Slo
    tally: Tally
    left: float | None
    minutes: float | None
    burn: float | None
    burn_window: timedelta
    alerts: tuple[SloAlert, ...] = ()


@dataclass(frozen=True)
class RuleBurn:
    """One burn-rate rule on a site's page: its burn rates over its long and short windows now
    (None: no checks), whether they reach its factor, and its ``site_slo_alerts`` row (None:
    not firing as of the drain's last evaluation)."""

    rule: BurnRule
    long: float | None
    short: float | None
    firing: bool
    alert: SloAlert | None


@dataclass(frozen=True)
class SiteBudget:
    """What a site's page shows of its SLO: the listing's ``budget``, the attainment (percent
    up), the window's p95 (ms, final up checks) and whether it meets ``slo.p95_ms`` (None: no
    latency objective or no checks), each rule's burn, and the budget left after each UTC day
    of the window (``alerting.slo.budget_series``)."""

    budget: Budget
    attainment: float | None
    p95_ms: float | None
    latency_met: bool | None
    rules: tuple[RuleBurn, ...]
    series: tuple[tuple[date, float | None], ...]


def budget_cell(budget: Budget | None) -> str:
    """The listing's "Budget left" cell: the percentage left and the minutes of downtime left
    (or over); ``-`` without an SLO, an em dash without checks in the window."""
    if budget is None:
        return f'<td class="num muted" title="no slo for this site">{NO_SLO}</td>'
    tip = _budget_tip(budget)
    if budget.left is None:
        return f'<td class="num muted" title="{escape(tip)}">—</td>'
    over = budget.left < 0
    minutes = status.minutes(abs(budget.minutes))
    return (
        f'<td class="num{" err" * over}" data-budget="{budget.left:.6f}" title="{escape(tip)}">'
        f"{status.budget_percent(budget.left)}"
        f'<div class="muted small">{minutes} {"over" if over else "left"}</div></td>'
    )


def burn_cell(budget: Budget | None) -> str:
    """The listing's "Burn" cell: the burn rate over ``burn_window`` ("0.4x"), red while a
    burn-rate alert fires; ``-`` without an SLO, an em dash without checks in the window."""
    if budget is None:
        return f'<td class="num muted" title="no slo for this site">{NO_SLO}</td>'
    window = format_duration(budget.burn_window)
    tip = (
        f"burn rate over the last {window}: the share of checks down ÷ the error budget"
        " (1x spends it exactly over the SLO's window)"
    )
    tip += "".join(
        f"; {a.severity} alert firing since {timestamp(a.firing_since)}" for a in budget.alerts
    )
    if budget.burn is None:
        return f'<td class="num muted" title="{escape(tip)}">—</td>'
    css = "num burning" if budget.alerts else "num"
    return (
        f'<td class="{css}" data-burn="{budget.burn:.6f}" title="{escape(tip)}">'
        f"{status.burn_rate(budget.burn)}</td>"
    )


def _budget_tip(budget: Budget) -> str:
    slo, tally = budget.slo, budget.tally
    allowed = slo.window / timedelta(minutes=1) * slo.budget
    return (
        f"target {slo.label}: "
        f"{status.minutes(allowed)} of downtime allowed; {tally.bad:,} of {tally.checks:,} "
        "checks down (final checks outside maintenance, by hours)"
    )


def section(site: SiteBudget | None, slo: Slo | None, now: datetime) -> str:
    """A site's SLO section: figures, each burn-rate rule, and the budget chart; a hint to add
    an ``slo`` when the site has none."""
    if site is None or slo is None:
        return (
            '<h2>Objective</h2><p class="muted" id=no-slo>No SLO: add for example '
            "<code>slo: {target: 99.9, window: 30d}</code> to the site in the sites file.</p>"
        )
    b = site.budget
    cards = [
        ("Target", slo.label),
        ("Attainment", status.uptime(b.tally.ups, b.tally.checks)),
        ("Budget left", "—" if b.left is None else status.budget_percent(b.left)),
        ("Downtime left", "—" if b.minutes is None else status.minutes(b.minutes)),
        ("p95 latency", _latency(site, slo)),
    ]
    html = "".join(f'<div class="card" data-card="{k}">{k}<b>{v}</b></div>' for k, v in cards)
    return (
        f"<h2>Objective</h2><div class=cards id=objective>{html}</div>"
        f"<h3>Burn-rate alerts</h3>{_rules_table(site.rules)}"
        f"<h3>{_chart_title(site.series, slo, now)}</h3>{chart(site.series)}"
    )


def _chart_title(series: Sequence[tuple[date, float | None]], slo: Slo, now: datetime) -> str:
    """The budget chart's heading: over the SLO's window, or since the first day with checks
    when that is later (the series starts there)."""
    window = format_duration(slo.window)
    if series and series[0][0] > (now - slo.window).date():
        since = series[0][0]
        return f"Error budget left since the first check, {since} (UTC days; window {window})"
    return f"Error budget left over the last {window} (UTC days)"


def _latency(site: SiteBudget, slo: Slo) -> str:
    shown = status.milliseconds(site.p95_ms)
    if slo.p95_ms is None:
        return f'{shown} <span class="muted small">no objective</span>'
    verdict = {True: "met", False: "missed", None: ""}[site.latency_met]
    css = "err" if site.latency_met is False else "muted"
    return f'{shown} <span class="{css} small">≤ {slo.p95_ms:,} ms {verdict}</span>'


def _rules_table(rules: Sequence[RuleBurn]) -> str:
    head = (
        "<tr><th>Severity</th><th class=num>Factor</th><th class=num>Long window</th>"
        "<th class=num>Short window</th><th>State</th></tr>"
    )
    lines = [
        f'<tr data-rule="{escape(r.rule.severity)}"><td>{escape(r.rule.severity)}</td>'
        f"<td class=num>{r.rule.factor:g}x</td>"
        f"<td class=num>{_rate(r.long)} over {format_duration(r.rule.long)}</td>"
        f"<td class=num>{_rate(r.short)} over {format_duration(r.rule.short)}</td>"
        f"<td>{_rule_state(r)}</td></tr>"
        for r in rules
    ]
    empty = (
        '<tr><td colspan="5" class="muted">No burn-rate rules (<code>burn: []</code>).</td></tr>'
    )
    return f"<table id=burn><thead>{head}</thead><tbody>{''.join(lines) or empty}</tbody></table>"


def _rate(rate: float | None) -> str:
    return "—" if rate is None else status.burn_rate(rate)


def _rule_state(rule: RuleBurn) -> str:
    if rule.alert is not None:
        return f'<span class="burning">firing</span> since {timestamp(rule.alert.firing_since)}'
    if rule.firing:
        return '<span class="burning">burning</span> (the drain alerts at its next evaluation)'
    return '<span class="muted">quiet</span>'


def chart(series: Sequence[tuple[date, float | None]], width: int = 900, height: int = 200) -> str:
    """An inline SVG of the budget left after each day: a line through the days with checks, a
    dot per day (its value on hover), the 0% line red when the budget is overspent; its first
    and last day labelled, or its one day under its point."""
    left, right, top, bottom = 56, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v in series if v is not None]
    low = min(0.0, *values) if values else 0.0

    def y(value: float) -> float:
        return top + plot_h * (1.0 - value) / (1.0 - low)

    def x(i: int) -> float:
        return left + plot_w * (i / (len(series) - 1) if len(series) > 1 else 0.5)

    points = [(x(i), y(v), day, v) for i, (day, v) in enumerate(series) if v is not None]
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
    dots = "".join(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{"#e53e3e" if v < 0 else "#3182ce"}">'
        f"<title>{day}: {status.budget_percent(v)} left</title></circle>"
        for px, py, day, v in points
    )
    marks = sorted({1.0, 0.5, 0.0, low}, reverse=True)
    grid = "".join(
        f'<line x1="{left}" x2="{width - right}" y1="{y(m):.1f}" y2="{y(m):.1f}" '
        f'stroke="{"#e53e3e" if m == 0 and low < 0 else "#e2e8f0"}"/>'
        f'<text x="{left - 6}" y="{y(m) + 4:.1f}" text-anchor="end">{m * 100:,.0f}%</text>'
        for m in marks
    )
    labels = (
        f'<text x="{left}" y="{height - 6}">{series[0][0]}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{series[-1][0]}</text>'
        if len(series) > 1
        else "".join(  # one day: one label, under its point
            f'<text x="{x(0):.1f}" y="{height - 6}" text-anchor="middle">{day}</text>'
            for day, _ in series
        )
    )
    empty = (
        ""
        if points
        else f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">'
        "no checks in this window</text>"
    )
    path = f'<polyline fill="none" stroke="#3182ce" stroke-width="1.5" points="{line}"/>'
    return (
        f'<svg id=budget-chart role="img" aria-label="error budget left" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{grid}{labels}{path if line else ''}{dots}{empty}</svg>"
    )
