"""Writing a page's files (``status.files.write_files``) to a local folder, as the status page DAG
does: each file replaced whole, a file whose bytes are already there left alone."""

from __future__ import annotations

from fsspec.implementations.local import LocalFileSystem

from sitewatch.status.files import write_files


def test_unchanged_files_are_left_alone_and_changed_ones_replaced(tmp_path):
    fs, base = LocalFileSystem(), str(tmp_path / "page")
    files = {"badges/a.svg": b"<svg>a</svg>", "index.html": b"<p>one</p>"}
    assert write_files(fs, base, files, renaming=True) == 22
    badge = tmp_path / "page" / "badges" / "a.svg"
    before = badge.stat().st_ino

    changed = {**files, "index.html": b"<p>two!</p>"}
    assert write_files(fs, base, changed, renaming=True) == 11  # only index.html
    assert badge.stat().st_ino == before  # not rewritten
    assert (tmp_path / "page" / "index.html").read_bytes() == b"<p>two!</p>"
    assert sorted(p.name for p in (tmp_path / "page").rglob("*")) == [
        "a.svg",
        "badges",
        "index.html",
    ]


def test_without_renames_every_file_is_written_in_place(tmp_path):
    fs, base = LocalFileSystem(), str(tmp_path)
    files = {"shields/a.json": b"{}"}
    assert write_files(fs, base, files, renaming=False) == 2
    assert write_files(fs, base, files, renaming=False) == 2
    assert (tmp_path / "shields" / "a.json").read_bytes() == b"{}"
