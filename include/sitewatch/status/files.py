"""A page's files, as relative path -> bytes: what the publisher writes under ``<target>/<id>/``,
and how it writes them to any fsspec file system (``write_files``)."""

from __future__ import annotations

import hashlib
import json
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


MANIFEST = ".sitewatch-published.json"
"""In each page's folder: a digest of every file as last written, so a publish writes only the
files that changed (delete it to have every file written again)."""


def write_files(fs, base: str, files: Mapping[str, bytes], *, renaming: bool) -> int:
    """Write those of ``files`` that changed under the folder ``base`` of the fsspec file system
    ``fs``, in their order, each replaced whole, then the manifest; return the bytes written.

    Of a page's files (8,000 for 1,000 components) only a few change from one minute to the
    next: the manifest (``MANIFEST``, one read and one write) says which, so an object store gets
    a few requests a minute instead of one per file. A file the manifest lists but that is gone
    is written again where that costs nothing to find (a local folder). renaming: ``fs`` renames
    in one step (a local folder): each file is written under a temporary name and renamed, so a
    reader never sees half of one; otherwise (object stores, where one PUT replaces an object
    whole) each is written in place.
    """
    known = _manifest(fs, f"{base}/{MANIFEST}")
    digests = {relative: _digest(data) for relative, data in files.items()}
    changed = [
        relative
        for relative in files
        if known.get(relative) != digests[relative]
        or (renaming and not fs.exists(f"{base}/{relative}"))
    ]
    for folder in sorted({posixpath.dirname(f"{base}/{relative}") for relative in changed}):
        fs.makedirs(folder, exist_ok=True)
    for relative in changed:
        _put(fs, f"{base}/{relative}", files[relative], renaming)
    if changed or known != digests:
        fs.makedirs(base, exist_ok=True)
        _put(fs, f"{base}/{MANIFEST}", json.dumps(digests, sort_keys=True).encode(), renaming)
    return sum(len(files[relative]) for relative in changed)


def _put(fs, path: str, data: bytes, renaming: bool) -> None:
    if not renaming:
        fs.pipe_file(path, data)
        return
    folder, name = posixpath.split(path)
    temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    fs.pipe_file(temporary, data)
    fs.mv(temporary, path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _manifest(fs, path: str) -> dict[str, str]:
    """The manifest's digests; {} when it is missing or unreadable (then every file is written)."""
    try:
        known = json.loads(fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}
