"""A status page as one static HTML file: readable without JavaScript, on a phone, light or dark
by the reader's system setting (``prefers-color-scheme``), every configured text escaped here.

Each component shows its status and a bar of its last 90 UTC days: one cell a day, coloured by
its uptime; the bar's label (what a screen reader reads) gives the overall uptime and the worst
days, and each day's uptime is in the bar's ``data-u``, which the page's script turns into each
cell's tooltip (``DAY_TITLES_SCRIPT``; 90 titles written out would weigh 80 KB on a page of 20
components). Maintenance in force or to
come is listed on top, after the open incidents; the incidents of the last 90 days follow the
components, each update's Markdown rendered safely (``status.markdown``); the footer says when
the page was made, so a page left behind by a stopped monitor says how old it is.

Times are written in UTC (``<time datetime>``); one small inline script, the page's only one,
shows them in the reader's time zone with UTC on hover, and writes the day cells' tooltips.
Without JavaScript the page reads the same, in UTC, without a tooltip per day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from sitewatch.dashboard.status import milliseconds, uptime
from sitewatch.status.atom import STATE_LABELS
from sitewatch.status.markdown import render
from sitewatch.status.model import ComponentView, DayBar, MaintenanceView, PageView

# Two sets of colours: fills (the bars, the chart, borders) and text (a status's words; the banner,
# whose text is --on over a text colour). Text meets WCAG AA's 4.5:1 on the page in either scheme
# (tests/browser/test_status_page_a11y.py runs axe-core on it); fills only need to tell apart.
_CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;
--ok:#2da44e;--warn:#d4a72c;--bad:#cf222e;--maint:#5a78d6;--none:#c9d1d9;--on:#fff;
--tok:#1a7f37;--twarn:#9a6700;--tbad:#cf222e;--tmaint:#4c5fd5}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;
--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--maint:#7c9cf5;--none:#30363d;
--on:#0d1117;--tok:#3fb950;--twarn:#d29922;--tbad:#f85149;--tmaint:#7c9cf5}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:52rem;margin:0 auto;padding:1rem}h1{font-size:1.6rem;margin:.5rem 0 1rem}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}.overall{padding:.8rem 1rem;border-radius:.4rem;
color:var(--on);font-weight:600;background:var(--tok)}.overall.minor{background:var(--twarn)}
.overall.major,.overall.critical{background:var(--tbad)}
.overall.maintenance{background:var(--tmaint)}
ul{list-style:none;margin:0;padding:0}.component{border:1px solid var(--line);
border-radius:.4rem;padding:.8rem 1rem;margin:.6rem 0}.head{display:flex;flex-wrap:wrap;
justify-content:space-between;gap:.5rem}.name{font-weight:600;overflow-wrap:anywhere}
.desc{margin:.2rem 0;color:var(--muted);font-size:.9rem;overflow-wrap:anywhere}
.s{font-weight:600}.s.operational{color:var(--tok)}.s.degraded_performance{color:var(--twarn)}
.s.partial_outage,.s.major_outage{color:var(--tbad)}.s.under_maintenance{color:var(--tmaint)}
.bar{display:flex;gap:1px;height:2rem;margin-top:.5rem}.bar i{flex:1;border-radius:1px;
background:var(--none)}.bar .o{background:var(--ok)}.bar .w{background:var(--warn)}
.bar .b{background:var(--bad)}.bar .m{background:var(--maint)}
.legend{display:flex;justify-content:space-between;color:var(--muted);font-size:.8rem}
.maint li{border-left:4px solid var(--maint);padding:.4rem .8rem;margin:.4rem 0}
.inc>li{border-left:4px solid var(--bad);padding:.4rem .8rem;margin:.6rem 0}
.inc>li.resolved{border-color:var(--line)}.inc h3{font-size:1rem;margin:0;overflow-wrap:anywhere}
.inc .meta{color:var(--muted);font-size:.85rem}.upd{margin:.4rem 0;overflow-wrap:anywhere}
.upd p{margin:.2rem 0}.upd ul{list-style:disc}.upd ul,.upd ol{margin:.2rem 0;padding-left:1.5rem}
footer{margin:2rem 0 1rem;color:var(--muted);font-size:.85rem}
.legend .from30{display:none}.rt{margin:.5rem 0 0}.rt svg{display:block;width:100%;height:3rem}
.rt polyline{fill:none;stroke:var(--maint);stroke-width:2;stroke-linecap:round;
vector-effect:non-scaling-stroke}
.rt figcaption{color:var(--muted);font-size:.8rem}
@media (max-width:40rem){.bar{gap:0}.bar i:nth-child(-n+60){display:none}
.legend .from90{display:none}.legend .from30{display:inline}}
"""
_CSS = " ".join(_CSS.split())


def render_html(view: PageView) -> str:
    """The page's ``index.html``."""
    level, description = view.indicator
    names = {c.slug: c.name for c in view.components}
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<link rel="alternate" type="application/atom+xml" href="feed.atom">',
        f"<title>{escape(view.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{escape(view.title)}</h1>",
        f'<p class="overall {level}" id="overall">{escape(description)}</p>',
    ]
    if view.open_incidents:
        items = "".join(_incident(i) for i in view.open_incidents)
        parts.append(f'<section id="incidents"><h2>Incidents</h2><ul class="inc">{items}</ul>')
        parts.append("</section>")
    if view.maintenances:
        items = "".join(_maintenance(m, names) for m in view.maintenances)
        parts.append(
            f'<section class="maint" id="maintenance"><h2>Maintenance</h2><ul>{items}</ul>'
        )
        parts.append("</section>")
    items = "".join(_component(c) for c in view.components)
    parts.append(f'<section id="components"><h2>Components</h2><ul>{items}</ul></section>')
    items = "".join(_incident(i) for i in view.past_incidents) or "<li>No incidents.</li>"
    parts.append(
        f'<section id="history"><h2>Past incidents</h2><ul class="inc">{items}</ul></section>'
    )
    parts.append(f"<footer>Updated at {_time(view.now)}</footer></main>")
    parts.append(f"<script>{PAGE_SCRIPT}</script></body></html>\n")
    return "".join(parts)


# Progressive enhancement: the page is written in UTC; where JavaScript runs, each <time> is
# rewritten in the reader's time zone, the UTC text kept as its tooltip. A constant: nothing
# configured or written by an operator ever goes into a script.
LOCAL_TIMES_SCRIPT = (
    'for(const t of document.querySelectorAll("time[datetime]")){'
    'const d=new Date(t.getAttribute("datetime"));if(isNaN(d))continue;'
    "t.title=t.textContent;"
    't.textContent=d.toLocaleString([],{dateStyle:"medium",timeStyle:"short"})}'
)
# Each bar's days as tooltips: data-from is its first day, data-u one word a day (an uptime like
# 99.95%, m for maintenance only, - for no checks), in the order of its cells.
DAY_TITLES_SCRIPT = (
    'for(const b of document.querySelectorAll(".bar[data-u]")){'
    'const u=b.dataset.u.split(" "),t0=Date.parse(b.dataset.from+"T00:00:00Z");'
    'b.querySelectorAll("i").forEach((c,k)=>{const w=u[k];if(w===undefined||isNaN(t0))return;'
    "c.title=new Date(t0+k*864e5).toISOString().slice(0,10)+': '+"
    "(w==='m'?'maintenance':w==='-'?'no data':w+' up')})}"
)
PAGE_SCRIPT = LOCAL_TIMES_SCRIPT + ";" + DAY_TITLES_SCRIPT


def _component(component: ComponentView) -> str:
    c = component
    description = f'<p class="desc">{escape(c.description)}</p>' if c.description else ""
    cells = "".join(_day(d) for d in c.days)
    checks, ups = sum(d.checks for d in c.days), sum(d.ups for d in c.days)
    overall = f"{uptime(ups, checks)} uptime" if checks else "no data"
    words = " ".join(_word(d) for d in c.days)
    first = c.days[0].day.isoformat() if c.days else ""
    return (
        f'<li class="component" id="c-{escape(c.slug)}" data-status="{c.status}">'
        f'<div class="head"><span class="name">{escape(c.name)}</span>'
        f'<span class="s {c.status}">{escape(c.label)}</span></div>{description}'
        f'<div class="bar" role="img" aria-label="{_bar_label(c.days, overall)}"'
        f' data-from="{first}" data-u="{words}">{cells}</div>'
        f'<div class="legend"><span class="from90">{len(c.days)} days ago</span>'
        '<span class="from30">30 days ago</span>'
        f'<span title="over the last {len(c.days)} days">{overall}</span>'
        f"<span>Today</span></div>{_chart(c) if c.response else ''}</li>"
    )


_WIDTH, _HEIGHT = 240, 40  # the chart's viewBox; it stretches to the component's width


def _chart(c: ComponentView) -> str:
    """The response-time chart: one line through the hourly medians (broken where an hour has
    none), scaled to the slowest, drawn in SVG with no text of its own; the caption under it
    says the same in words, for screen readers (the SVG is hidden from them) and everyone."""
    values = [ms for _, ms in c.response if ms is not None]
    span = f"Response time, last {len(c.response)} h"
    if not values:
        return f'<figure class="rt"><figcaption>{span}: no data</figcaption></figure>'
    top, typical = max(values), sorted(values)[len(values) // 2]
    step = _WIDTH / (len(c.response) - 1)
    runs: list[list[str]] = [[]]
    for k, (_, ms) in enumerate(c.response):
        if ms is None:
            runs.append([])
            continue
        y = _HEIGHT - 1 - ms / top * (_HEIGHT - 2) if top else _HEIGHT - 1
        runs[-1].append(f"{k * step:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(run if len(run) > 1 else run * 2)}"/>' for run in runs if run
    )
    caption = (
        f"{span}: typically {milliseconds(typical)}, at most {milliseconds(top)}"
        " (each hour's median)"
    )
    return (
        f'<figure class="rt"><svg viewBox="0 0 {_WIDTH} {_HEIGHT}" preserveAspectRatio="none"'
        f' aria-hidden="true" focusable="false">{lines}</svg>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _day(day: DayBar) -> str:
    """One cell: o (all up), w (at least 99%), b (less), m (maintenance only), none (no checks).
    Unquoted classes and a bare ``<i>``: 90 cells a component add up (under 100 KB for 20)."""
    rate = day.uptime
    if rate is None:
        return "<i class=m></i>" if day.maint_checks else "<i></i>"
    return f"<i class={'o' if rate == 1 else 'w' if rate >= 0.99 else 'b'}></i>"


def _word(day: DayBar) -> str:
    """The day in the bar's ``data-u`` (``DAY_TITLES_SCRIPT`` reads it)."""
    if day.uptime is None:
        return "m" if day.maint_checks else "-"
    return uptime(day.ups, day.checks)


_WORST = 3  # days named in a bar's label


def _bar_label(days, overall: str) -> str:
    """What a screen reader hears of a bar: the span, the overall uptime and the worst days."""
    label = f"Uptime per day, last {len(days)} days: {overall}"
    worst = sorted((d for d in days if d.uptime is not None and d.uptime < 1), key=_rate)
    if worst:
        named = ", ".join(f"{d.day.isoformat()} {uptime(d.ups, d.checks)}" for d in worst[:_WORST])
        return f"{label}; lowest: {named}"
    return f"{label}; no day below 100%" if any(d.uptime is not None for d in days) else label


def _rate(day: DayBar) -> tuple:
    return day.uptime, day.day


def _incident(incident) -> str:
    """An incident, its updates newest first, each rendered from Markdown (``status.markdown``).
    No author: who wrote an update stays with the operators."""
    css = ' class="resolved"' if incident.resolved_at else ""
    affected = escape(", ".join(incident.components))
    meta = f"{escape(STATE_LABELS.get(incident.state, incident.state))}"
    meta += f" · opened {_time(incident.opened_at)}"
    if incident.resolved_at:
        meta += f" · resolved {_time(incident.resolved_at)}"
    if affected:
        meta += f" · {affected}"
    updates = "".join(
        f'<div class="upd"><span class="meta"><strong>'
        f"{escape(STATE_LABELS.get(u.state, u.state))}</strong> {_time(u.at)}</span>"
        f"{render(u.body)}</div>"
        for u in reversed(incident.updates)
    )
    return (
        f'<li id="i-{incident.id}"{css}><h3>{escape(incident.title)}</h3>'
        f'<p class="meta">{meta}</p>{updates}</li>'
    )


def _maintenance(m: MaintenanceView, names: dict[str, str]) -> str:
    which = ", ".join(escape(names[s]) for s in m.components)
    if m.active:
        return f"<li data-active>In progress until {_time(m.end)}: {which}</li>"
    return f"<li>Scheduled from {_time(m.start)} to {_time(m.end)}: {which}</li>"


def _time(at: datetime) -> str:
    at = at.astimezone(UTC)
    return f'<time datetime="{at.isoformat()}">{at:%Y-%m-%d %H:%M} UTC</time>'
