"""Writing a page's files (``status.files.write_files``) as the status page DAG does, to a local
folder and to an fsspec memory store standing for an object store: each file replaced whole,
only what changed since the last publish written (the folder's manifest)."""

from __future__ import annotations

import uuid

from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from sitewatch.status.files import MANIFEST, write_files


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
        MANIFEST,
        "a.svg",
        "badges",
        "index.html",
    ]


def test_a_file_gone_from_a_local_folder_is_written_again(tmp_path):
    fs, base = LocalFileSystem(), str(tmp_path)
    files = {"badges/a.svg": b"<svg>a</svg>", "index.html": b"<p>one</p>"}
    write_files(fs, base, files, renaming=True)
    (tmp_path / "badges" / "a.svg").unlink()
    assert write_files(fs, base, files, renaming=True) == 12
    assert (tmp_path / "badges" / "a.svg").read_bytes() == b"<svg>a</svg>"


def test_an_object_store_gets_only_the_changed_files_and_the_manifest():
    fs = MemoryFileSystem()
    base = f"/sitewatch-test-{uuid.uuid4().hex}/page"
    files = {f"badges/{k}.svg": f"<svg>{k}</svg>".encode() for k in range(100)}
    files["index.html"] = b"<p>one</p>"
    try:
        assert write_files(fs, base, files, renaming=False) == sum(map(len, files.values()))
        puts = []
        original = fs.pipe_file
        fs.pipe_file = lambda path, data, **kw: (puts.append(path), original(path, data, **kw))
        assert write_files(fs, base, files, renaming=False) == 0
        assert puts == []  # nothing changed: not even the manifest
        assert write_files(fs, base, {**files, "index.html": b"<p>two</p>"}, renaming=False) == 10
        assert puts == [f"{base}/index.html", f"{base}/{MANIFEST}"]  # the page, then the manifest
        fs.pipe_file(f"{base}/{MANIFEST}", b"not json")  # a damaged manifest: all written again
        puts.clear()
        write_files(fs, base, files, renaming=False)
        assert len(puts) == len(files) + 1
        assert fs.cat_file(f"{base}/index.html") == b"<p>one</p>"
    finally:
        fs.rm(base.rsplit("/", 1)[0], recursive=True)
