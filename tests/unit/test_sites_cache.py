"""``cached_sites``: the result of ``load_sites``, validated again only when the content changed,
in memory and on disk; a cache entry never serves a stale, another file's or a corrupt result."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from pathlib import Path
from types import MappingProxyType

import pytest

from sitewatch.config import diskcache, loader
from sitewatch.config.loader import cached_sites, load_sites

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    *sorted((FIXTURES / "valid").glob("*.yaml")),
    *sorted((FIXTURES / "invalid").glob("*.yaml")),
    REPO / "include" / "sites.yaml",
    REPO / "include" / "sites.reference.yaml",  # every key, alert targets included
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache directory and an empty memory cache; returns the directory."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(diskcache.DIR_VAR, str(directory))
    monkeypatch.setattr(loader, "_cached", {})
    return directory


@pytest.fixture
def validations(monkeypatch):
    """Counts the validations of a file's bytes that the loader makes."""
    calls = []
    real = loader._load_bytes

    def counting(data, path):
        calls.append(path)
        return real(data, path)

    monkeypatch.setattr(loader, "_load_bytes", counting)
    return calls


def fresh_process(monkeypatch) -> None:
    """Forget the memory cache, as a new process starts without it."""
    monkeypatch.setattr(loader, "_cached", {})


def sites_text(*names: str) -> str:
    return "sites:\n" + "".join(f"  - {{name: {n}, url: 'https://{n}.example/'}}\n" for n in names)


def names(result) -> list[str]:
    return [site.name for site in result.sites]


def cache_file(directory: Path) -> Path:
    """The one cache file in ``directory``."""
    [file] = directory.glob("sites-*.pickle")
    return file


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_memory_and_disk_give_what_load_sites_gives(path, cache, monkeypatch, validations):
    expected = load_sites(path)
    assert cached_sites(path) == expected  # validated, stored on disk
    fresh_process(monkeypatch)
    from_disk = cached_sites(path)
    assert from_disk == expected
    assert len(validations) == 2  # load_sites, then the first cached_sites only
    assert all(isinstance(site.headers, MappingProxyType) for site in from_disk.sites)
    assert cached_sites(path) is from_disk


def test_default_path_is_the_one_load_sites_reads(cache, monkeypatch, tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    monkeypatch.setenv(loader.ENV_VAR, str(path))
    assert cached_sites() == load_sites() == load_sites(path)


def test_the_sites_by_name_are_indexed_once_per_file(cache, tmp_path):
    path = tmp_path / "sites.yaml"
    paused = "  - {name: paused, url: 'https://paused.example/', enabled: false}\n"
    path.write_text(sites_text("alpha", "beta") + paused)
    first = cached_sites(path)
    assert list(first.by_name) == ["alpha", "beta", "paused"]
    assert list(first.enabled_by_name) == ["alpha", "beta"]
    assert first.by_name["beta"] is first.sites[1]
    assert cached_sites(path).by_name is first.by_name  # the same file, the same index
    path.write_text(sites_text("gamma"))
    assert list(cached_sites(path).by_name) == ["gamma"]


def test_a_content_change_is_validated_again(cache, tmp_path, validations):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    assert names(cached_sites(path)) == ["alpha"]
    path.write_text(sites_text("alpha", "beta"))
    assert names(cached_sites(path)) == ["alpha", "beta"]
    assert len(validations) == 2


def test_a_touch_without_a_change_reuses_the_result(cache, tmp_path, validations):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    first = cached_sites(path)
    later = time.time_ns() + 5 * 10**9
    os.utime(path, ns=(later, later))
    assert cached_sites(path) is first
    assert len(validations) == 1


def test_a_same_size_rewrite_with_the_mtime_restored_is_seen_by_its_ctime(
    cache, tmp_path, monkeypatch
):
    # Trust the stat key at once, so that only the ctime can reveal the rewrite.
    monkeypatch.setattr(loader, "_RACY_NS", 0)
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    before = os.stat(path)
    assert names(cached_sites(path)) == ["alpha"]
    time.sleep(0.05)  # past a coarse clock tick: not every file system has fine ctimes
    path.write_text(sites_text("gamma"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert names(cached_sites(path)) == ["gamma"]


def test_within_the_racy_window_a_rewrite_that_keeps_the_stat_key_is_found(
    cache, tmp_path, monkeypatch
):
    # A file system whose timestamps did not move between two writes (one clock tick).
    monkeypatch.setattr(loader, "_stat_key", lambda info: (1, 2, 3))
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    assert names(cached_sites(path)) == ["alpha"]
    path.write_text(sites_text("gamma"))
    assert names(cached_sites(path)) == ["gamma"]  # the file changed < _RACY_NS ago: hashed


def test_a_settled_entry_costs_a_stat_and_no_read(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "_RACY_NS", 0)
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    first = cached_sites(path)
    reads = []
    monkeypatch.setattr(loader, "_read", lambda p: reads.append(p) or b"")
    assert cached_sites(path) is first
    assert reads == []


def test_concurrent_callers_wait_for_one_validation(cache, tmp_path, monkeypatch):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    calls = []
    real = loader._load_bytes

    def slow(data, path):
        calls.append(path)
        time.sleep(0.2)  # holds the others at the lock, or lets them validate too without one
        return real(data, path)

    monkeypatch.setattr(loader, "_load_bytes", slow)
    start = threading.Barrier(8)
    results = []

    def call():
        start.wait()
        results.append(cached_sites(path))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_the_same_content_at_another_path_is_labelled_with_that_path(cache, tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    text = "sites:\n  - {name: alpha, url: 'ftp://alpha.example/'}\n"  # an issue names its file
    one.write_text(text)
    two.write_text(text)
    assert cached_sites(one) == load_sites(one)
    assert cached_sites(two) == load_sites(two)
    assert cached_sites(two).issues[0].file == str(two)


def test_a_cache_file_under_another_paths_name_is_not_used(cache, tmp_path, monkeypatch):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    text = "sites:\n  - {name: alpha, url: 'ftp://alpha.example/'}\n"
    one.write_text(text)
    two.write_text(text)
    cached_sites(one)
    os.replace(cache_file(cache), diskcache._file(cache, str(two)))
    fresh_process(monkeypatch)
    assert cached_sites(two) == load_sites(two)


def test_another_code_version_does_not_read_the_old_entry(
    cache, tmp_path, monkeypatch, validations
):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    cached_sites(path)
    fresh_process(monkeypatch)
    monkeypatch.setattr(diskcache, "code_version", lambda: b"a later sitewatch")
    assert cached_sites(path) == load_sites(path)
    assert len(validations) == 3  # the first call, the new version's and load_sites


def test_an_unreadable_file_is_reported_and_not_cached(cache, tmp_path):
    path = tmp_path / "later.yaml"
    assert cached_sites(path) == load_sites(path)
    assert cached_sites(path).issues[0].field == "<file>"
    path.write_text(sites_text("alpha"))
    assert names(cached_sites(path)) == ["alpha"]


def test_memory_holds_a_few_paths_at_most(cache, tmp_path):
    for i in range(loader._MAX_PATHS + 3):
        path = tmp_path / f"sites{i}.yaml"
        path.write_text(sites_text(f"s{i}"))
        assert names(cached_sites(path)) == [f"s{i}"]
    assert len(loader._cached) == loader._MAX_PATHS


def with_checksum(data: bytes, payload: bytes) -> bytes:
    """The file's header (magic and key) over ``payload`` and its right checksum."""
    return data[: diskcache._HEAD] + hashlib.sha256(payload).digest() + payload


CORRUPTIONS = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "header only": lambda data: data[: diskcache._HEAD],
    # a site's name changed: a valid pickle of other sites, caught by the checksum
    "one byte changed": lambda data: data.replace(b"beta", b"bet4"),
    "random": lambda data: os.urandom(len(data)),
    "garbage pickle, right checksum": lambda data: with_checksum(data, b"\x80\x05garbage."),
    "cut pickle, right checksum": lambda data: with_checksum(data, data[-100:]),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_cache_file_is_ignored_and_replaced(
    corrupt, cache, tmp_path, monkeypatch, validations
):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha", "beta"))
    expected = load_sites(path)
    cached_sites(path)
    file = cache_file(cache)
    file.write_bytes(corrupt(file.read_bytes()))
    fresh_process(monkeypatch)
    assert cached_sites(path) == expected
    fresh_process(monkeypatch)
    assert cached_sites(path) == expected  # from the rewritten file
    assert len(validations) == 3  # load_sites, the first call, the call that met the corruption


def test_cache_files_are_0600_in_a_0700_directory(cache, tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    cached_sites(path)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert [stat.S_IMODE(f.stat().st_mode) for f in cache.iterdir()] == [0o600]


def test_a_cache_file_others_can_write_is_not_read(cache, tmp_path, monkeypatch, validations):
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    cached_sites(path)
    cache_file(cache).chmod(0o666)
    fresh_process(monkeypatch)
    assert cached_sites(path) == load_sites(path)
    assert len(validations) == 3
    assert stat.S_IMODE(cache_file(cache).stat().st_mode) == 0o600  # replaced


def test_a_directory_that_is_not_private_is_not_used(cache, tmp_path, caplog):
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)  # whatever the umask
    path = tmp_path / "sites.yaml"
    path.write_text(sites_text("alpha"))
    with caplog.at_level(logging.WARNING, logger=diskcache.__name__):
        assert cached_sites(path) == load_sites(path)
    assert list(cache.iterdir()) == []
    assert "not a directory private to this user" in caplog.text
