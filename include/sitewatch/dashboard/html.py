"""The dashboard's HTML primitives: the page shell with its inline CSS, a state badge, a time.

Shared by ``render`` (the listing, a site's page, the chart) and ``locations`` (the location
cells and the run matrix), so both write the same markup for the same thing. Every value passes
through ``escape``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

# .loc cells: a location's state, small and coloured like the badges (states of
# sitewatch.dashboard.status); "missing" and "retrying" are what only a location can be;
# "maintenance" is what only a site can be (dashboard.maintenance).
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:16px 20px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%}th,td{padding:6px 8px;border-bottom:1px solid #e2e8f0;
text-align:left;vertical-align:top}th{font-weight:600;background:#f7fafc;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}a{color:#2b6cb0;text-decoration:none}
a:hover{text-decoration:underline}.badge{display:inline-block;padding:1px 8px;border-radius:10px;
font-weight:600;font-size:12px}.up{background:#c6f6d5;color:#22543d}.down{background:#fed7d7;
color:#822727}.stale{background:#feebc8;color:#7b341e}.nodata{background:#e2e8f0;color:#4a5568}
.partial{background:#fefcbf;color:#744210}.missing{background:#fff;color:#718096}
.retrying{background:#ebf8ff;color:#2c5282}.maintenance{background:#e9d8fd;color:#44337a}
.degraded{background:#fbd38d;color:#744210}
.tag{display:inline-block;padding:0 5px;border-radius:3px;font-size:11px;line-height:16px}
tr[data-in-maintenance] td{background:#faf5ff}
.small{font-size:11px}.burning{color:#c53030;font-weight:600}th a{color:inherit}
h3{font-size:14px;margin:14px 0 6px}code{font-size:12px}#reports a{margin:0 2px}
.muted{color:#718096}.err{color:#822727}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:18px}svg text{font-size:11px;fill:#4a5568}
.locs{display:flex;flex-wrap:wrap;gap:3px;margin-top:4px;max-width:240px}
.loc{display:inline-block;padding:0 5px;border-radius:3px;font-size:11px;line-height:16px;
white-space:nowrap;border:1px solid transparent}.loc.missing{border:1px dashed #a0aec0}
.quorum{font-size:11px}#runs{width:auto}td.cell{padding:3px 4px;min-width:72px}
td.cell .loc{display:block;text-align:center}
a.sort{cursor:pointer;border-bottom:1px dotted #a0aec0}a.sort:hover{text-decoration:none;
border-bottom-style:solid}a.sort .mark{color:#a0aec0;font-weight:400}a.sort .mark.on{color:#2b6cb0}
"""


def page(title: str, body: str, script: str = "") -> str:
    """A whole HTML document: ``title`` (escaped here), ``body`` (HTML, escaped by its maker)
    and an inline ``script`` run after it (a constant of this package, never data)."""
    tail = f"<script>{script}</script>" if script else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{CSS}</style></head><body>{body}{tail}</body></html>"
    )


def badge(state: str, title: str | None = None) -> str:
    """A state's badge (``up``, ``degraded``, ``down``, ``partial``, ``stale``, ``no data``,
    ``maintenance``), with an optional tooltip; ``data-state`` holds the state for tests and
    scripts."""
    css, tip = escape(state.replace(" ", "")), f' title="{escape(title)}"' if title else ""
    return f'<span class="badge {css}" data-state="{escape(state)}"{tip}>{escape(state)}</span>'


def timestamp(value: datetime | None) -> str:
    """``2026-03-10 12:00:00 UTC`` (an aware time, in UTC whatever the session's time zone),
    or an em dash."""
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
