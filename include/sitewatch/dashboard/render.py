"""HTML for the dashboard: the sites listing and a site's page with an inline SVG chart.

Server-rendered and self-contained (inline CSS and SVG, no script, no external asset), so the page
works in the Airflow UI's iframe, in a tab of its own and on a network without internet. Every
value from the database passes through ``escape``, and only an http(s) URL becomes a link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from urllib.parse import quote

from sitewatch.dashboard import locations, status
from sitewatch.dashboard.html import badge, page, timestamp
from sitewatch.names import site_dag_id
from sitewatch.observation import HTTP_URL
from sitewatch.storage.queries import Attempt, SiteSummary


def unavailable(reason: str) -> str:
    """The page shown when the results database cannot answer (unreachable, tables missing)."""
    body = f'<h1>Sites</h1><p class="unavailable">The results are unavailable: {escape(reason)}</p>'
    return page("Sites: unavailable", body)


def _dag_link(ui_base: str, site: str) -> str:
    # target=_top leaves the UI's iframe for the DAG's own page.
    dag_id = site_dag_id(site)
    href = f"{ui_base}/dags/{quote(dag_id)}"
    return f'<a href="{escape(href)}" target="_top">{escape(dag_id)}</a>'


def _url(url: str) -> str:
    """A link to an http(s) ``url``; any other text as text. The drain rejects other schemes, but
    rows stored before it did, or by hand, may hold a ``javascript:`` URL."""
    if not HTTP_URL.match(url):
        return f'<span class="url">{escape(url)}</span>'
    return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(url)}</a>'


def _tls(summary: SiteSummary | None, now: datetime) -> str:
    days = status.days_left(summary.tls_expires_at if summary else None, now)
    return "—" if days is None else f"{days} d"


def _error(summary: SiteSummary, now: datetime) -> str:
    if summary.last_error is None:
        return '<span class="muted">none (24 h)</span>'
    detail = escape(summary.last_error_detail or "")
    return (
        f'<span class="err" title="{detail}">{escape(summary.last_error)}</span> '
        f'<span class="muted">{status.age(summary.last_error_at, now)}</span>'
    )


def listing(
    rows: Sequence[tuple[str, SiteSummary | None, str]],
    now: datetime,
    ui_base: str = "",
    several: Mapping[str, status.LocationsView] | None = None,
) -> str:
    """The Sites page: one table row per (site name, summary or None, state). ``several``: the
    sites checked from several locations (by name), whose Status cell also shows the locations
    (``locations.status_cell``); every other row looks as it did before locations existed."""
    several = several or {}
    head = (
        "<tr><th>Site</th><th>Status</th><th>Last check</th><th class=num>Uptime 24 h</th>"
        "<th class=num>7 d</th><th class=num>30 d</th><th class=num>p50 (24 h)</th>"
        "<th class=num>p95 (24 h)</th><th>Last error</th><th class=num>TLS left</th>"
        "<th>DAG</th></tr>"
    )
    lines = []
    for name, s, state in rows:
        link = f'<a href="sites/{quote(name)}">{escape(name)}</a>'
        view = several.get(name)
        shown = locations.status_cell(view, state, now) if view else badge(state)
        if s is None:
            cells = '<td colspan="8" class="muted">no checks stored yet</td>'
            lines.append(
                f'<tr data-site="{escape(name)}"><td>{link}</td><td>{shown}</td>'
                f"{cells}<td>{_dag_link(ui_base, name)}</td></tr>"
            )
            continue
        lines.append(
            f'<tr data-site="{escape(name)}"><td>{link}</td><td>{shown}</td>'
            f'<td title="{timestamp(s.last_scheduled_at)}">'
            f"{status.age(s.last_scheduled_at, now)}</td>"
            f"<td class=num>{status.uptime(s.ups_24h, s.checks_24h)}</td>"
            f"<td class=num>{status.uptime(s.ups_7d, s.checks_7d)}</td>"
            f"<td class=num>{status.uptime(s.ups_30d, s.checks_30d)}</td>"
            f"<td class=num>{status.milliseconds(s.p50_ms)}</td>"
            f"<td class=num>{status.milliseconds(s.p95_ms)}</td>"
            f"<td>{_error(s, now)}</td><td class=num>{_tls(s, now)}</td>"
            f"<td>{_dag_link(ui_base, name)}</td></tr>"
        )
    empty = '<tr><td colspan="11" class="muted">No sites yet.</td></tr>'
    body = (
        f"<h1>Sites</h1><p class=muted>{_count(len(rows), 'site')} · {timestamp(now)} · "
        "uptime counts final "
        "attempts; 7 d and 30 d are UTC days including today</p>"
        f"<table id=sites><thead>{head}</thead><tbody>{''.join(lines) or empty}</tbody></table>"
    )
    return page("Sites · sitewatch", body)


def site_page(
    name: str,
    summary: SiteSummary | None,
    state: str,
    series: Sequence[tuple[datetime, float | None, bool]],
    attempts: Sequence[Attempt],
    now: datetime,
    ui_base: str = "",
    where: status.SiteLocations | None = None,
) -> str:
    """A site's page: its figures, the 24 h response-time chart and its recent attempts.

    where: for a site checked from several locations, its locations, quorum and recent runs:
    the page adds the quorum and the matrix of runs by location (``locations.runs_table``).
    """
    s = summary
    several = where is not None and len(where.locations) > 1
    cards = [
        ("Status", badge(state)),
        ("Uptime 24 h", status.uptime(s.ups_24h, s.checks_24h) if s else "—"),
        ("7 d", status.uptime(s.ups_7d, s.checks_7d) if s else "—"),
        ("30 d", status.uptime(s.ups_30d, s.checks_30d) if s else "—"),
        ("p50 (24 h)", status.milliseconds(s.p50_ms if s else None)),
        ("p95 (24 h)", status.milliseconds(s.p95_ms if s else None)),
        ("TLS left", _tls(s, now)),
    ]
    if several:
        cards.insert(1, ("Locations", locations.quorum(where.quorum, len(where.locations))))
    card_html = "".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in cards)
    url = f" · {_url(s.url)}" if s else ""
    runs = f"<h2>Recent runs by location</h2>{locations.runs_table(where)}" if several else ""
    with_location = locations.show_location(where, attempts)
    body = (
        f'<p><a href="../">← Sites</a></p><h1>{escape(name)}</h1>'
        f"<p>DAG {_dag_link(ui_base, name)}{url}</p><div class=cards>{card_html}</div>{runs}"
        f"<h2>Response time, last 24 h (final attempts)</h2>{chart(series, now)}"
        f"<h2>Recent attempts</h2>{_attempts_table(attempts, with_location)}"
    )
    return page(f"{name} · sitewatch", body)


def _attempts_table(attempts: Sequence[Attempt], with_location: bool = False) -> str:
    head = (
        "<tr><th>Scheduled</th>"
        + ("<th>Location</th>" if with_location else "")
        + "<th class=num>Attempt</th><th>Final</th><th>Result</th>"
        "<th class=num>Status</th><th class=num>Response</th><th class=num>First byte</th>"
        "<th>Error</th></tr>"
    )
    rows = []
    for a in attempts:
        detail = f" — {escape(a.error_detail)}" if a.error_detail else ""
        where = f"<td>{escape(a.location)}</td>" if with_location else ""
        rows.append(
            f"<tr><td>{timestamp(a.scheduled_at)}</td>{where}<td class=num>{a.attempt}</td>"
            f"<td>{'yes' if a.final else 'no'}</td><td>{badge(status.UP if a.up else status.DOWN)}"
            f"</td><td class=num>{a.status_code or '—'}</td>"
            f"<td class=num>{status.milliseconds(a.response_time_ms)}</td>"
            f"<td class=num>{status.milliseconds(a.ttfb_ms)}</td>"
            f"<td>{escape(a.error or '')}{detail}</td></tr>"
        )
    empty = f'<tr><td colspan="{8 + with_location}" class="muted">No attempts stored.</td></tr>'
    return (
        f"<table id=attempts><thead>{head}</thead><tbody>{''.join(rows) or empty}</tbody></table>"
    )


def chart(
    series: Sequence[tuple[datetime, float | None, bool]],
    now: datetime,
    span: timedelta = timedelta(hours=24),
    width: int = 900,
    height: int = 220,
) -> str:
    """An inline SVG of response times over ``span`` up to ``now``: a line through the checks
    that were up, a red dot for each that was down (at its time, or on the axis if it had no
    response)."""
    left, right, top, bottom = 56, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [ms for _, ms, _ in series if ms is not None]
    peak = max(values, default=0.0) * 1.1 or 100.0
    start = now - span

    def xy(at: datetime, ms: float | None) -> tuple[float, float]:
        x = left + plot_w * min(max((at - start) / span, 0.0), 1.0)
        return x, top + plot_h * (1 - min(ms or 0.0, peak) / peak)

    line = " ".join(f"{x:.1f},{y:.1f}" for at, ms, up in series if up for x, y in [xy(at, ms)])
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#e53e3e"><title>down</title></circle>'
        for at, ms, up in series
        if not up
        for x, y in [xy(at, ms)]
    )
    grid = "".join(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h * f:.1f}" '
        f'y2="{top + plot_h * f:.1f}" stroke="#e2e8f0"/><text x="{left - 6}" '
        f'y="{top + plot_h * f + 4:.1f}" text-anchor="end">{peak * (1 - f):,.0f} ms</text>'
        for f in (0.0, 0.5, 1.0)
    )
    labels = (
        f'<text x="{left}" y="{height - 6}">{start:%H:%M}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{now:%H:%M} UTC</text>'
    )
    empty = (
        ""
        if series
        else f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">'
        "no checks in this window</text>"
    )
    path = f'<polyline fill="none" stroke="#3182ce" stroke-width="1.5" points="{line}"/>'
    return (
        f'<svg id=chart role="img" aria-label="response time" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{grid}{labels}{path if line else ''}{dots}{empty}</svg>"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
