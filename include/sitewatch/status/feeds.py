"""A status page for machines: ``summary.json`` in the shape of Atlassian Statuspage's (so
existing widgets and aggregators read it), an SVG badge per component and a shields.io endpoint
JSON per component, for its status and for its uptime over 24 h, 7 d and 30 d. Only the page's
own texts go in: ids, titles, names, descriptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape

from sitewatch.dashboard.status import uptime
from sitewatch.status.model import (
    DEGRADED,
    MAINTENANCE,
    MAJOR,
    OPERATIONAL,
    PARTIAL,
    ComponentView,
    MaintenanceView,
    PageView,
)

_COLORS = {
    OPERATIONAL: ("#2da44e", "brightgreen"),
    DEGRADED: ("#d4a72c", "yellow"),
    PARTIAL: ("#e36209", "orange"),
    MAJOR: ("#cf222e", "red"),
    MAINTENANCE: ("#5a78d6", "blue"),
}
"""A status's (SVG fill, shields.io color name)."""
_MESSAGES = {
    OPERATIONAL: "operational",
    DEGRADED: "degraded",
    PARTIAL: "partial outage",
    MAJOR: "major outage",
    MAINTENANCE: "maintenance",
}


def summary(view: PageView) -> dict:
    """The page as Statuspage's ``/api/v2/summary.json``: ``page``, ``status``, ``components``,
    ``incidents`` (the unresolved ones, as Statuspage lists them, each with its updates newest
    first; no author) and ``scheduled_maintenances``."""
    updated = _iso(view.now)
    indicator, description = view.indicator
    components = [_component(view, c, updated) for c in view.components]
    by_slug = {c["id"]: c for c in components}
    by_name = {c["name"]: c for c in components}
    return {
        "page": {"id": view.id, "name": view.title, "time_zone": "Etc/UTC", "updated_at": updated},
        "status": {"indicator": indicator, "description": description},
        "components": components,
        "incidents": [_incident(view, i, by_name) for i in view.open_incidents],
        "scheduled_maintenances": [
            _maintenance(view, m, [by_slug[s] for s in m.components], updated)
            for m in view.maintenances
        ],
    }


def summary_json(view: PageView) -> str:
    return json.dumps(summary(view), indent=2, ensure_ascii=False) + "\n"


def _component(view: PageView, c: ComponentView, updated: str) -> dict:
    return {
        "id": c.slug,
        "name": c.name,
        "status": c.status,
        "description": c.description,
        "position": c.position,
        "page_id": view.id,
        "group_id": None,
        "group": False,
        "showcase": True,
        "only_show_if_degraded": False,
        "updated_at": updated,
    }


def _incident(view: PageView, incident, by_name: dict) -> dict:
    """Statuspage's incident: ``status`` is the state, ``impact`` the worst status now of the
    components it names (``none`` when it names none)."""
    affected = [by_name[name] for name in incident.components if name in by_name]
    statuses = {c["status"] for c in affected}
    impact = next(
        (impact for status, impact in _IMPACTS if status in statuses),
        "none",
    )
    updates = [
        {
            "id": f"{incident.id}-{n}",
            "status": u.state,
            "body": u.body,
            "incident_id": str(incident.id),
            "created_at": _iso(u.at),
            "updated_at": _iso(u.at),
            "display_at": _iso(u.at),
            "affected_components": None,
        }
        for n, u in reversed(list(enumerate(incident.updates, 1)))
    ]
    last = updates[0]["created_at"] if updates else _iso(incident.opened_at)
    monitoring = [u["created_at"] for u in updates if u["status"] == "monitoring"]
    return {
        "id": str(incident.id),
        "name": incident.title,
        "status": incident.state,
        "impact": impact,
        "page_id": view.id,
        "created_at": _iso(incident.opened_at),
        "started_at": _iso(incident.opened_at),
        "updated_at": last,
        "monitoring_at": monitoring[0] if monitoring else None,
        "resolved_at": None,
        "shortlink": f"index.html#i-{incident.id}",
        "incident_updates": updates,
        "components": affected,
    }


_IMPACTS = ((MAJOR, "critical"), (PARTIAL, "major"), (DEGRADED, "minor"))


def _maintenance(view: PageView, m: MaintenanceView, components: list, updated: str) -> dict:
    return {
        "id": f"{m.start.astimezone(UTC):%Y%m%dT%H%MZ}-{m.end.astimezone(UTC):%Y%m%dT%H%MZ}",
        "name": "Scheduled maintenance",
        "status": "in_progress" if m.active else "scheduled",
        "impact": "maintenance",
        "page_id": view.id,
        "scheduled_for": _iso(m.start),
        "scheduled_until": _iso(m.end),
        "created_at": updated,
        "updated_at": updated,
        "monitoring_at": None,
        "resolved_at": None,
        "incident_updates": [],
        "components": components,
    }


def shields(c: ComponentView) -> str:
    """shields.io's endpoint JSON (``https://img.shields.io/endpoint?url=...``)."""
    return _shields(c.name, _MESSAGES[c.status], _COLORS[c.status][1])


def badge_svg(c: ComponentView) -> str:
    """A flat badge: the component's name on grey, its status on its color."""
    return _badge(c.name, _MESSAGES[c.status], _COLORS[c.status][0])


def _uptime(c: ComponentView, window: str) -> tuple[str, str, tuple[str, str]]:
    """(label, message, colors) of an uptime badge: ``<name> <window>`` and the percentage,
    green from 99.9 %, yellow-green from 99 %, yellow from 95 %, red below; grey without
    checks (``no data``)."""
    tally = c.uptimes.get(window)
    label = f"{c.name} {window}"
    if tally is None or not tally.checks:
        return label, "no data", ("#9f9f9f", "lightgrey")
    rate = tally.ups / tally.checks
    colors = next(color for floor, color in _UPTIME_COLORS if rate >= floor)
    return label, uptime(tally.ups, tally.checks), colors


_UPTIME_COLORS = (
    (0.999, ("#2da44e", "brightgreen")),
    (0.99, ("#97ca00", "yellowgreen")),
    (0.95, ("#d4a72c", "yellow")),
    (0.0, ("#cf222e", "red")),
)


def uptime_badge_svg(c: ComponentView, window: str) -> str:
    """A flat badge of the component's uptime over ``window`` (one of
    ``storage.metrics.WINDOWS``)."""
    label, message, colors = _uptime(c, window)
    return _badge(label, message, colors[0])


def uptime_shields(c: ComponentView, window: str) -> str:
    """shields.io's endpoint JSON of the component's uptime over ``window``."""
    label, message, colors = _uptime(c, window)
    return _shields(label, message, colors[1])


def _shields(label: str, message: str, color: str) -> str:
    body = {"schemaVersion": 1, "label": label, "message": message, "color": color}
    return json.dumps(body, ensure_ascii=False) + "\n"


def _badge(label: str, message: str, fill: str) -> str:
    """Label on grey, message on ``fill``. Widths are estimated from the character count (no
    font metrics at hand), generously."""
    left, right = _width(label), _width(message)
    total = left + right
    title = escape(f"{label}: {message}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img"'
        f' aria-label="{title}"><title>{title}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{fill}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif"'
        ' font-size="11">'
        f'<text x="{left / 2:g}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2:g}" y="14">{escape(message)}</text></g></svg>\n'
    )


def _width(text: str) -> int:
    return 7 * len(text) + 12


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
