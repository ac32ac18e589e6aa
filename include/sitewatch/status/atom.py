"""A status page's Atom feed (RFC 4287), ``feed.atom``: one entry per incident (open, or of the
last 90 days) with its updates, newest first, and one per maintenance in force or to come. Built
with ``xml.etree``, which escapes every text; an entry's content is the rendered, escaped HTML of
its updates (``status.markdown``). As on the page, never an update's author."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html import escape

from sitewatch.status.markdown import render
from sitewatch.status.model import MaintenanceView, PageView

ATOM = "http://www.w3.org/2005/Atom"
STATE_LABELS = {
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
}


def atom_feed(view: PageView) -> str:
    """The feed as UTF-8 XML text."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _text(feed, "id", f"urn:sitewatch:status:{view.id}")
    _text(feed, "title", view.title)
    _text(feed, "updated", _iso(view.now))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", view.title)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", href="index.html")
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href="feed.atom")
    for incident in view.incidents:
        _incident(feed, view, incident)
    names = {c.slug: c.name for c in view.components}
    for m in view.maintenances:
        _maintenance(feed, view, m, names)
    return ET.tostring(feed, encoding="unicode", xml_declaration=True) + "\n"


def _incident(feed: ET.Element, view: PageView, incident) -> None:
    entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
    _text(entry, "id", f"urn:sitewatch:status:{view.id}:incident:{incident.id}")
    label = STATE_LABELS.get(incident.state, incident.state)
    _text(entry, "title", f"{incident.title} ({label})")
    last = max([u.at for u in incident.updates], default=incident.opened_at)
    _text(entry, "updated", _iso(max(last, incident.resolved_at or last)))
    _text(entry, "published", _iso(incident.opened_at))
    ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", href=f"index.html#i-{incident.id}")
    parts = []
    if incident.components:
        parts.append(f"<p>Affected: {escape(', '.join(incident.components))}</p>")
    for update in reversed(incident.updates):
        state = STATE_LABELS.get(update.state, update.state)
        parts.append(f"<p><strong>{escape(state)}</strong> {escape(_iso(update.at))}</p>")
        parts.append(render(update.body))
    _text(entry, "content", "".join(parts), type="html")


def _maintenance(feed: ET.Element, view: PageView, m: MaintenanceView, names: dict) -> None:
    entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
    stamp = f"{m.start.astimezone(UTC):%Y%m%dT%H%MZ}-{m.end.astimezone(UTC):%Y%m%dT%H%MZ}"
    _text(entry, "id", f"urn:sitewatch:status:{view.id}:maintenance:{stamp}")
    what = "Maintenance in progress" if m.active else "Scheduled maintenance"
    _text(entry, "title", f"{what}: {_iso(m.start)} to {_iso(m.end)}")
    _text(entry, "updated", _iso(view.now if m.active else m.start))
    which = ", ".join(names[s] for s in m.components)
    _text(entry, "summary", f"{what} from {_iso(m.start)} to {_iso(m.end)}: {which}")


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    child.text = text
    return child


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
