"""A page's files, as relative path -> bytes: what the publisher writes under ``<target>/<id>/``."""

from __future__ import annotations

from sitewatch.status.atom import atom_feed
from sitewatch.status.feeds import badge_svg, shields, summary_json
from sitewatch.status.html import render_html
from sitewatch.status.model import PageView


def page_files(view: PageView) -> dict[str, bytes]:
    """``index.html``, ``summary.json``, ``feed.atom``, ``badges/<component>.svg`` and
    ``shields/<component>.json``, encoded UTF-8. ``index.html`` comes last, so a reader who
    sees the new page finds its feeds and badges already there."""
    files = {"summary.json": summary_json(view), "feed.atom": atom_feed(view)}
    for component in view.components:
        files[f"badges/{component.slug}.svg"] = badge_svg(component)
        files[f"shields/{component.slug}.json"] = shields(component)
    files["index.html"] = render_html(view)
    return {path: text.encode("utf-8") for path, text in files.items()}
