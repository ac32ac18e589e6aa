"""A page's files, as relative path -> bytes: what the publisher writes under ``<target>/<id>/``."""

from __future__ import annotations

from sitewatch.status.atom import atom_feed
from sitewatch.status.feeds import (
    badge_svg,
    shields,
    summary_json,
    uptime_badge_svg,
    uptime_shields,
)
from sitewatch.status.html import render_html
from sitewatch.status.model import PageView
from sitewatch.storage.metrics import WINDOWS


def page_files(view: PageView) -> dict[str, bytes]:
    """``index.html``, ``summary.json``, ``feed.atom``, ``badges/<component>.svg`` and
    ``shields/<component>.json`` (its status), ``badges/uptime-<window>/<component>.svg`` and
    ``shields/uptime-<window>/<component>.json`` (its uptime over 24h, 7d, 30d), encoded
    UTF-8. ``index.html`` comes last, so a reader who sees the new page finds its feeds and
    badges already there."""
    files = {"summary.json": summary_json(view), "feed.atom": atom_feed(view)}
    for component in view.components:
        files[f"badges/{component.slug}.svg"] = badge_svg(component)
        files[f"shields/{component.slug}.json"] = shields(component)
        for window in WINDOWS:
            files[f"badges/uptime-{window}/{component.slug}.svg"] = uptime_badge_svg(
                component, window
            )
            files[f"shields/uptime-{window}/{component.slug}.json"] = uptime_shields(
                component, window
            )
    files["index.html"] = render_html(view)
    return {path: text.encode("utf-8") for path, text in files.items()}
