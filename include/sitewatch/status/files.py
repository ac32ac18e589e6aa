"""A page's files, as relative path -> bytes: what the publisher writes under ``<target>/<id>/``,
and how it writes them to any fsspec file system (``write_files``)."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Mapping

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


def write_files(fs, base: str, files: Mapping[str, bytes], *, renaming: bool) -> int:
    """Write ``files`` under the folder ``base`` of the fsspec file system ``fs``, in their
    order, each replaced whole; return the bytes written.

    renaming: ``fs`` renames in one step (a local folder): each file is written under a
    temporary name and renamed, so a reader never sees half of one, and a file whose bytes are
    there already is left alone. Reading costs a tenth of writing and renaming, and most of a
    page's files (8,000 for 1,000 components) do not change from one minute to the next.
    Otherwise (object stores, where a read costs a request as a write does, and one PUT replaces
    an object whole) each file is written in place.
    """
    for folder in sorted({posixpath.dirname(f"{base}/{relative}") for relative in files}):
        fs.makedirs(folder, exist_ok=True)
    written = 0
    for relative, data in files.items():
        final = f"{base}/{relative}"
        if not renaming:
            fs.pipe_file(final, data)
        elif _holds(fs, final, data):
            continue
        else:
            folder, name = posixpath.split(final)
            temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
            fs.pipe_file(temporary, data)
            fs.mv(temporary, final)
        written += len(data)
    return written


def _holds(fs, path: str, data: bytes) -> bool:
    try:
        return fs.cat_file(path) == data
    except FileNotFoundError:
        return False
