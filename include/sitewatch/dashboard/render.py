"""HTML for the dashboard: the sites listing and a site's page with an inline SVG chart.

Server-rendered and self-contained (inline CSS and SVG, no external asset; the one script is the
Sites page's own refresh, ``refresh``), so the page works in the Airflow UI's iframe, in a tab of
its own and on a network without internet. Every value from the database passes through
``escape``, and only an http(s) URL becomes a link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from http import HTTPStatus
from urllib.parse import quote

from sitewatch.config.maintenance import InMaintenance, maintenance_at
from sitewatch.config.site import Site
from sitewatch.dashboard import budget, locations, refresh, status, waterfall
from sitewatch.dashboard import maintenance as maint
from sitewatch.dashboard.html import badge, page, timestamp
from sitewatch.dashboard.report import FORMATS as REPORT_FORMATS
from sitewatch.dashboard.timeaxis import axis_start, end_labels, tick_label, ticks
from sitewatch.names import site_dag_id
from sitewatch.observation import HTTP_URL
from sitewatch.storage.mutes import Mute
from sitewatch.storage.queries import Attempt, SiteSummary


def unavailable(reason: str) -> str:
    """The page shown when the results database cannot answer (unreachable, tables missing)."""
    body = f'<h1>Sites</h1><p class="unavailable">The results are unavailable: {escape(reason)}</p>'
    return page("Sites: unavailable", body)


def error_page(code: int, message: str, home: str) -> str:
    """The page of an HTTP error (404 for an unknown site, 400 for a bad parameter, ...) in the
    pages' style: its code and phrase as the heading, ``message`` (escaped here) under it, and
    a link back to the Sites page at ``home``."""
    phrase = HTTPStatus(code).phrase
    body = (
        f'<p><a href="{escape(home)}">← Sites</a></p><h1>{code} {escape(phrase)}</h1>'
        f'<p class="err" id=error data-status="{code}">{escape(message)}</p>'
    )
    return page(f"{phrase} · sitewatch", body)


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


_SHORT_ERROR = 60  # characters of an error in the listing's cell; all of it on hover


def _error(summary: SiteSummary, now: datetime) -> str:
    """The listing's Last error: the error as every page writes it (``status.error_text``),
    cut short in the cell, whole on hover, and its age."""
    if summary.last_error is None:
        return '<span class="muted">none (24 h)</span>'
    text = status.error_text(summary.last_error, summary.last_error_detail)
    short = text if len(text) <= _SHORT_ERROR else text[: _SHORT_ERROR - 1] + "…"
    return (
        f'<span class="err" title="{escape(text)}">{escape(short)}</span> '
        f'<span class="muted">{status.age(summary.last_error_at, now)}</span>'
    )


# (header, ?sort= key or None, class): the listing's columns, in order.
_COLUMNS = (
    ("Site", "name", ""),
    ("Status", "status", ""),
    ("Last check", None, ""),
    ("Uptime 24 h", None, "num"),
    ("7 d", None, "num"),
    ("30 d", None, "num"),
    ("Budget left", "budget", "num"),
    ("Burn", "burn", "num"),
    ("p50 (24 h)", None, "num"),
    ("p95 (24 h)", None, "num"),
    ("Last error", None, ""),
    ("TLS left", None, "num"),
    ("DAG", None, ""),
)
_ARIA_SORT = {"name": "ascending", "budget": "ascending", "burn": "descending"}


def listing(
    rows: Sequence[tuple[str, SiteSummary | None, str]],
    now: datetime,
    ui_base: str = "",
    several: Mapping[str, status.LocationsView] | None = None,
    *,
    budgets: Mapping[str, budget.Budget] | None = None,
    maintenance: Mapping[str, InMaintenance] | None = None,
    sort: str = "name",
) -> str:
    """The Sites page: the table of ``listing_rows`` (the same arguments), and the script that
    reads them again every ``refresh.EVERY_SECONDS`` in the same order (``refresh``)."""
    options = dict(budgets=budgets, maintenance=maintenance, sort=sort)
    body = (
        f"<h1>Sites</h1><p class=muted>{_count(len(rows), 'site')} · "
        f"<span id=read>{_read(now)}</span> · "
        "uptime counts final attempts outside maintenance; 7 d and 30 d are UTC days including "
        "today; budget left is over each site's SLO window (by hours), burn over its "
        "shortest alerting window</p>"
        f'{_reports(now)}<table id=sites data-sort="{escape(sort)}" '
        f'data-refresh="{refresh.EVERY_SECONDS}"><thead>{_head(sort)}</thead>'
        f"{listing_rows(rows, now, ui_base, several, **options)}</table>"
    )
    return page("Sites · sitewatch", body, refresh.SCRIPT)


def listing_rows(
    rows: Sequence[tuple[str, SiteSummary | None, str]],
    now: datetime,
    ui_base: str = "",
    several: Mapping[str, status.LocationsView] | None = None,
    *,
    budgets: Mapping[str, budget.Budget] | None = None,
    maintenance: Mapping[str, InMaintenance] | None = None,
    sort: str = "name",
) -> str:
    """The Sites page's table body: one row per (site name, summary or None, state), in the
    order ``sort`` (``status.SORTS``; ValueError for another), as a ``<tbody>`` whose
    ``data-read`` says when its figures were read ("read 2026-03-10 12:00:00 UTC").

    several: the sites checked from several locations (by name), whose Status cell also shows
    the locations (``locations.status_cell``). budgets: the sites with an SLO (the others show
    ``-``). maintenance: the sites in a window now, shown as ``maintenance`` beside their state.
    """
    several, budgets, maintenance = several or {}, budgets or {}, maintenance or {}

    def key(row):
        name, _, state = row
        shown = status.MAINTENANCE if name in maintenance else state
        b = budgets.get(name)
        return status.sort_key(sort, name, shown, b and b.left, b and b.burn)

    lines = [
        _listing_row(name, s, state, now, ui_base, several.get(name), budgets.get(name),
                     maintenance.get(name))
        for name, s, state in sorted(rows, key=key)
    ]  # fmt: skip
    empty = f'<tr><td colspan="{len(_COLUMNS)}" class="muted">No sites yet.</td></tr>'
    return f'<tbody data-read="{_read(now)}">{"".join(lines) or empty}</tbody>'


def _read(now: datetime) -> str:
    return f"read {timestamp(now)}"


def _head(sort: str) -> str:
    """The listing's header row. A header that sorts looks it: a link with a pointer and a
    mark, ▾ on the order in force, a faint ⇅ on the others (``html.CSS``: ``.sort``)."""
    cells = []
    for title, key, css in _COLUMNS:
        cls = f" class={css}" if css else ""
        if key is None:
            cells.append(f"<th{cls}>{title}</th>")
            continue
        active = key == sort
        aria = f' aria-sort="{_ARIA_SORT.get(key, "other")}"' if active else ""
        mark = '<span class="mark on">▾</span>' if active else '<span class="mark">⇅</span>'
        cells.append(
            f'<th{cls}{aria}><a class=sort href="?sort={key}" data-sort="{key}" '
            f'title="sort by {title.lower()}">{title} {mark}</a></th>'
        )
    return f"<tr>{''.join(cells)}</tr>"


def _listing_row(
    name: str,
    s: SiteSummary | None,
    state: str,
    now: datetime,
    ui_base: str,
    view: status.LocationsView | None,
    slo: budget.Budget | None,
    window: InMaintenance | None,
) -> str:
    link = f'<a href="sites/{quote(name)}">{escape(name)}</a>'
    if view is not None:
        shown = locations.status_cell(view, state, now, window)
    else:
        shown = maint.status_badge(window, state, now) if window else badge(state)
    budget_cells = budget.budget_cell(slo) + budget.burn_cell(slo)
    if s is None:
        cells = (
            f'<td colspan="4" class="muted">no checks stored yet</td>{budget_cells}'
            '<td colspan="4"></td>'
        )
    else:
        cells = (
            f'<td title="{timestamp(s.last_scheduled_at)}">'
            f"{status.age(s.last_scheduled_at, now)}</td>"
            f"<td class=num>{status.uptime(s.ups_24h, s.checks_24h)}</td>"
            f"<td class=num>{status.uptime(s.ups_7d, s.checks_7d)}</td>"
            f"<td class=num>{status.uptime(s.ups_30d, s.checks_30d)}</td>{budget_cells}"
            f"<td class=num>{status.milliseconds(s.p50_ms)}</td>"
            f"<td class=num>{status.milliseconds(s.p95_ms)}</td>"
            f"<td>{_error(s, now)}</td><td class=num>{_tls(s, now)}</td>"
        )
    return (
        f'<tr data-site="{escape(name)}"><td>{link}</td><td>{shown}</td>{cells}'
        f"<td>{_dag_link(ui_base, name)}</td></tr>"
    )


def _reports(now: datetime) -> str:
    """Links to the SLA report (``/sitewatch/report``) of the previous and the current month."""
    this = now.astimezone(UTC).date().replace(day=1)
    months = [f"{this - timedelta(days=1):%Y-%m}", f"{this:%Y-%m}"]
    parts = []
    for month, label in zip(months, ("", " (so far)"), strict=True):
        links = " · ".join(
            f'<a href="report?month={month}&amp;format={fmt}" download '
            f'data-report="{month}.{fmt}">{fmt}</a>'
            for fmt in REPORT_FORMATS
        )
        parts.append(f"{month}{label}: {links}")
    return f"<p class=muted id=reports>SLA report {' — '.join(parts)}</p>"


def site_page(
    name: str,
    summary: SiteSummary | None,
    state: str,
    series: Sequence[tuple[datetime, float | None, bool]],
    attempts: Sequence[Attempt],
    now: datetime,
    ui_base: str = "",
    where: status.SiteLocations | None = None,
    *,
    site: Site | None = None,
    objective: budget.SiteBudget | None = None,
    mutes: Sequence[Mute] = (),
) -> str:
    """A site's page: its figures, the 24 h response-time chart, its objective and error budget,
    its maintenance windows and its recent attempts.

    where: for a site checked from several locations, its locations, quorum and recent runs:
    the page adds the quorum and the matrix of runs by location (``locations.runs_table``).
    site: the configured site (None: not in the sites file), for its ``slo``, ``maintenance``,
    ``depends_on`` and ``degraded_ms``. objective: its SLO's figures (None without an slo).
    mutes: its ad-hoc mutes not over yet.
    """
    s = summary
    several = where is not None
    windows = site.maintenance if site else ()
    window = maintenance_at(windows, mutes, now)
    cards = [
        ("Status", maint.status_badge(window, state, now) if window else badge(state)),
        ("Uptime 24 h", status.uptime(s.ups_24h, s.checks_24h) if s else "—"),
        ("7 d", status.uptime(s.ups_7d, s.checks_7d) if s else "—"),
        ("30 d", status.uptime(s.ups_30d, s.checks_30d) if s else "—"),
        ("p50 (24 h)", status.milliseconds(s.p50_ms if s else None)),
        ("p95 (24 h)", status.milliseconds(s.p95_ms if s else None)),
        ("TLS left", _tls(s, now)),
    ]
    tls_version = next((a.tls_version for a in attempts if a.tls_version), None)
    if tls_version is not None:  # the newest recent attempt's that made a TLS connection
        cards.append(("TLS version", f"<span id=tls-version>{escape(tls_version)}</span>"))
    if several:
        cards.insert(1, ("Locations", locations.quorum(where.quorum, len(where.locations))))
    if site is not None and site.degraded_ms is not None:
        cards.append(("Degraded above", status.milliseconds(site.degraded_ms)))
    card_html = "".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in cards)
    url = f" · {_url(s.url)}" if s else ""
    runs = f"<h2>Recent runs by location</h2>{locations.runs_table(where)}" if several else ""
    with_location = locations.show_location(where, attempts)
    body = (
        f'<p><a href="../">← Sites</a></p><h1>{escape(name)}</h1>'
        f"<p>DAG {_dag_link(ui_base, name)}{url}</p>{_parents(site)}"
        f"<div class=cards>{card_html}</div>{runs}"
        f"{_chart_section(s, series, now)}"
        f"{budget.section(objective, site.slo if site else None, now)}"
        f"<h2>Maintenance</h2>{maint.windows_table(windows, mutes, now)}"
        f"{waterfall.sections(attempts)}"
        f"<h2>Recent attempts</h2>{_attempts_table(attempts, with_location)}"
    )
    return page(f"{name} · sitewatch", body)


def _parents(site: Site | None) -> str:
    """The "Depends on a, b" line: links to the parents whose DOWN holds this site's alerts."""
    if site is None or not site.depends_on:
        return ""
    links = ", ".join(
        f'<a href="{quote(parent)}" data-parent="{escape(parent)}">{escape(parent)}</a>'
        for parent in site.depends_on
    )
    return (
        f'<p id=parents>Depends on {links} <span class="muted small">(while a parent is '
        "down, this site's DOWN alerts are held)</span></p>"
    )


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
        where = f"<td>{escape(a.location)}</td>" if with_location else ""
        row, held = (
            ("<tr data-in-maintenance>", maint.ATTEMPT_MARK) if a.maintenance else ("<tr>", "")
        )
        rows.append(
            f"{row}<td>{timestamp(a.scheduled_at)}</td>{where}<td class=num>{a.attempt}</td>"
            f"<td>{'yes' if a.final else 'no'}</td><td>{badge(status.UP if a.up else status.DOWN)}"
            f"{held}</td><td class=num>{a.status_code or '—'}</td>"
            f"<td class=num>{status.milliseconds(a.response_time_ms)}</td>"
            f"<td class=num>{status.milliseconds(a.ttfb_ms)}</td>"
            f"<td>{escape(status.error_text(a.error, a.error_detail))}</td></tr>"
        )
    empty = f'<tr><td colspan="{8 + with_location}" class="muted">No attempts stored.</td></tr>'
    return (
        f"<table id=attempts><thead>{head}</thead><tbody>{''.join(rows) or empty}</tbody></table>"
    )


def _chart_section(
    summary: SiteSummary | None,
    series: Sequence[tuple[datetime, float | None, bool, bool]],
    now: datetime,
) -> str:
    """The response-time heading and chart: over the last 24 h, or from the first check of a
    site that has none older (every check of its 30 days is in the last 24 hours)."""
    new = bool(series) and summary is not None and summary.checks_30d <= summary.checks_24h
    if not new:
        return f"<h2>Response time, last 24 h (final attempts)</h2>{chart(series, now)}"
    first = series[0][0]
    return (
        f"<h2>Response time since the first check, {status.age(first, now)} (final attempts)"
        f"</h2>{chart(series, now, first=first)}"
    )


def chart(
    series: Sequence[tuple[datetime, float | None, bool, bool]],
    now: datetime,
    span: timedelta = timedelta(hours=24),
    width: int = 900,
    height: int = 220,
    *,
    first: datetime | None = None,
) -> str:
    """An inline SVG of response times over ``span`` up to ``now``, or from ``first`` (a site's
    first check) when that is later (``timeaxis.axis_start``): a line through the checks that
    were up, a red dot for each that was down (at its time, or on the axis if it had no
    response), and a shaded band over each stretch of checks in maintenance (``series``: (at,
    ms, up, maintenance), oldest first). The axis's ends and round times are labelled, with
    their dates where it crosses a UTC day; ``data-start`` holds where it starts."""
    left, right, top, bottom = 56, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [ms for _, ms, _, _ in series if ms is not None]
    peak = max(values, default=0.0) * 1.1 or 100.0
    start = axis_start(first, now, span)
    span = now - start

    def xy(at: datetime, ms: float | None) -> tuple[float, float]:
        x = left + plot_w * min(max((at - start) / span, 0.0), 1.0)
        return x, top + plot_h * (1 - min(ms or 0.0, peak) / peak)

    line = " ".join(f"{x:.1f},{y:.1f}" for at, ms, up, _ in series if up for x, y in [xy(at, ms)])
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#e53e3e"><title>down</title></circle>'
        for at, ms, up, _ in series
        if not up
        for x, y in [xy(at, ms)]
    )
    bands = ""
    for first, last in _maintenance_stretches(series):
        x0, x1 = xy(first, None)[0] - 2, xy(last, None)[0] + 2
        bands += (
            f'<rect data-maintenance-band x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" '
            f'height="{plot_h}" fill="#e9d8fd"><title>in maintenance: {timestamp(first)} to '
            f"{timestamp(last)}</title></rect>"
        )
    if bands:
        bands += (
            f'<text x="{width - right}" y="{top + 10}" text-anchor="end">shaded: checks in '
            "maintenance</text>"
        )
    grid = "".join(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h * f:.1f}" '
        f'y2="{top + plot_h * f:.1f}" stroke="#e2e8f0"/><text x="{left - 6}" '
        f'y="{top + plot_h * f + 4:.1f}" text-anchor="end">{peak * (1 - f):,.0f} ms</text>'
        for f in (0.0, 0.5, 1.0)
    )
    labels = _time_labels(start, now, lambda at: xy(at, None)[0], (left, width - right, top),
                          height)  # fmt: skip
    empty = (
        ""
        if series
        else f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">'
        "no checks in this window</text>"
    )
    path = f'<polyline fill="none" stroke="#3182ce" stroke-width="1.5" points="{line}"/>'
    return (
        f'<svg id=chart role="img" aria-label="response time" width="{width}" height="{height}" '
        f'data-start="{start.isoformat()}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f"{bands}{grid}{labels}{path if line else ''}{dots}{empty}</svg>"
    )


def _time_labels(start: datetime, end: datetime, x, box: tuple, height: int) -> str:
    """The time axis's labels: both ends (``timeaxis.end_labels``), and a faint line and a label
    at each round time (``timeaxis.ticks``) not too near an end's label to read."""
    left, right, top = box
    first, last = end_labels(start, end)
    text = (
        f'<text x="{left}" y="{height - 6}" data-axis=start>{first}</text>'
        f'<text x="{right}" y="{height - 6}" text-anchor="end" data-axis=end>{last}</text>'
    )
    for at in ticks(start, end):
        at_x = x(at)
        if at_x < left + 130 or at_x > right - 130:  # the ends' labels are about 100 px wide
            continue
        text += (
            f'<line x1="{at_x:.1f}" x2="{at_x:.1f}" y1="{top}" y2="{height - 24}" '
            f'stroke="#edf2f7"/><text x="{at_x:.1f}" y="{height - 6}" text-anchor="middle" '
            f"data-axis=tick>{tick_label(at)}</text>"
        )
    return text


def _maintenance_stretches(series) -> list[tuple[datetime, datetime]]:
    """(first, last) time of each run of consecutive points of ``series`` in maintenance."""
    stretches: list[tuple[datetime, datetime]] = []
    previous = False
    for at, _, _, held in series:
        if held and previous:
            stretches[-1] = (stretches[-1][0], at)
        elif held:
            stretches.append((at, at))
        previous = held
    return stretches


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
