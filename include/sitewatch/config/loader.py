"""The sites file: load, validate strictly, and hand out one immutable ``Site`` per valid entry.

Loading never raises for bad content. Every problem becomes a ``ConfigIssue`` naming file, line
and field (``sites.yaml:12: sites[3].regex: invalid regex at position 4: missing )``), all of them
are reported, and an entry with problems never hides the valid entries around it. The site keys
are declared in ``keys`` (their checks in ``checks`` and ``notify``), the walk over one document
is in ``reader``, YAML reading with line numbers in ``yamltree``, the record types in ``site`` (all
in ``sitewatch.config``). ``cached_sites`` gives the same result to processes that need it again
and again, validating only a changed file (in memory, then on disk: ``diskcache``).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import yaml

from sitewatch.config import diskcache
from sitewatch.config.key_checks import ascii_host, compile_pattern, entry_kind
from sitewatch.config.keys import BUILTIN_DEFAULTS, FIELDS
from sitewatch.config.reader import CROSS_KEY_RULES, Reader, kind_problem, subfield
from sitewatch.config.site import ConfigIssue, Site, SitesFile
from sitewatch.config.values import unknown_key
from sitewatch.config.yamltree import Invalid, TooComplex, compose, line_of, no_gc
from sitewatch.errors import ConfigError

__all__ = [
    "ConfigIssue",
    "Site",
    "SitesFile",
    "cached_sites",
    "compile_pattern",
    "default_sites_path",
    "load_sites",
    "load_text",
    "site_for_url",
]

ENV_VAR = "SITEWATCH_SITES_FILE"
MAX_FILE_BYTES = 32 * 1024 * 1024  # ~300,000 sites; anything larger is not a hand-kept list
CLI_FILE = "<command line>"
_MAX_PATHS = 4  # the sites file, and a test's or a bench's own; more only rotate through
# How long after a file's last change its stat key may still miss a second change: clocks tick
# coarsely (a few ms on Linux, 1-2 s on network and FAT file systems).
_RACY_NS = 2 * 10**9


class _Entry(NamedTuple):
    """What ``cached_sites`` knows of one path."""

    key: tuple[int, ...]  # _stat_key when the file was last read
    settled: bool  # read _RACY_NS after its last change: the key alone proves it unchanged
    digest: bytes  # sha256 of the bytes read
    result: SitesFile


_cached: dict[str, _Entry] = {}
_cache_lock = threading.Lock()


def default_sites_path() -> Path:
    """``$SITEWATCH_SITES_FILE`` when set, else ``include/sites.yaml`` next to the package."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "sites.yaml"


def load_sites(path: str | Path | None = None) -> SitesFile:
    """Read and validate a sites file (default: ``default_sites_path()``).

    Never raises for bad content: a missing, unreadable, oversized or non-UTF-8 file is reported
    as a single issue on field ``<file>``.
    """
    path = str(default_sites_path() if path is None else path)
    try:
        data = _read(path)
    except OSError as exc:
        return _unreadable(path, exc)
    return _load_bytes(data, path)


def cached_sites(path: str | Path | None = None) -> SitesFile:
    """``load_sites(path)``, validated again only when the file's content changed.

    For processes that need the sites many times: the DAG file at every parse, the triggerer at
    every check. A call whose file is unchanged costs one ``os.stat`` and a dict lookup: the key
    is the file's inode, size, mtime and ctime, and a rewrite changes the ctime even when it keeps
    the size and restores the mtime (``os.utime`` cannot set a ctime). A changed key costs a read
    and a sha256 of the bytes (1 ms at 10,000 sites): the same bytes, after a ``touch`` or a
    save without changes, keep the result; other bytes come from the on-disk cache
    (``sitewatch.config.diskcache``) or are validated and stored there, so the next process need
    not validate them either. For ``_RACY_NS`` after a change the stat key is not trusted on its
    own (timestamps are coarse: two writes within one clock tick can leave it unchanged), and each
    call hashes the bytes again.

    Thread-safe: concurrent callers wait for one validation. Process-local and bounded
    (``_MAX_PATHS``). The result is shared by every caller: treat it as read-only (``Site`` is
    frozen; do not change the lists of ``SitesFile``). An unreadable file is reported as by
    ``load_sites`` and not cached.
    """
    path = str(default_sites_path() if path is None else path)
    try:
        info = os.stat(path)
    except OSError as exc:
        return _unreadable(path, exc)
    entry = _cached.get(path)
    if entry is not None and entry.key == _stat_key(info) and entry.settled:
        return entry.result
    with _cache_lock:
        return _refresh(path)


def _refresh(path: str) -> SitesFile:
    """Bring ``path``'s cache entry up to date and return its result (holding ``_cache_lock``)."""
    now = time.time_ns()
    try:
        info = os.stat(path)
        data = _read(path)  # the stat comes first: a write after it changes the next key
    except OSError as exc:
        return _unreadable(path, exc)
    key, entry = _stat_key(info), _cached.get(path)
    if entry is not None and entry.key == key and entry.settled:  # another thread refreshed it
        return entry.result
    digest = hashlib.sha256(data).digest()
    if entry is not None and entry.digest == digest:
        result = entry.result
    else:
        result = _stored_or_loaded(path, data, digest)
    if path not in _cached and len(_cached) >= _MAX_PATHS:
        del _cached[next(iter(_cached))]  # the oldest path
    _cached[path] = _Entry(key, now - info.st_ctime_ns > _RACY_NS, digest, result)
    return result


def _stored_or_loaded(path: str, data: bytes, digest: bytes) -> SitesFile:
    directory = diskcache.cache_dir()
    if directory is None:
        return _load_bytes(data, path)
    key = diskcache.cache_key(path, digest)
    result = diskcache.read(directory, path, key)
    if result is None:
        result = _load_bytes(data, path)
        diskcache.write(directory, path, key, result)
    return result


def _load_bytes(data: bytes, path: str) -> SitesFile:
    if len(data) > MAX_FILE_BYTES:
        return _failed(path, 0, f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return _failed(path, 1, "not UTF-8 text: the file is UTF-16; save it as UTF-8")
        line = data.count(b"\n", 0, exc.start) + 1
        return _failed(path, line, f"not UTF-8 text: cannot decode byte 0x{data[exc.start]:02x}")
    return load_text(text, path)


def load_text(text: str, path: str = "<string>") -> SitesFile:
    """Validate sites-file text; ``path`` only labels the issues."""
    with no_gc():
        try:
            root = compose(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            if "end of stream" in str(exc.problem) and exc.context_mark:
                mark = exc.context_mark  # where the unclosed quote or bracket began
            return _failed(path, mark.line + 1, _yaml_message(exc))
        except yaml.reader.ReaderError as exc:  # str(exc) spans two lines; an issue is one
            line = text.count("\n", 0, exc.position) + 1
            what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else "byte"
            return _failed(path, line, f"invalid YAML: unacceptable character {what}: {exc.reason}")
        except (yaml.YAMLError, RecursionError) as exc:
            message = "document nested too deeply" if isinstance(exc, RecursionError) else exc
            return _failed(path, 1, f"invalid YAML: {message}")
        except UnicodeEncodeError as exc:  # text given as str (not a file) with a lone surrogate
            line = text.count("\n", 0, exc.start) + 1
            return _failed(path, line, f"not text: {exc.object[exc.start]!r} is no character")
        if root is None:
            return _failed(path, 1, "empty document: expected a mapping with a 'sites' list")
        reader = Reader(path)
        try:
            sites = reader.read(root)
        except TooComplex as exc:
            return _failed(path, line_of(root), str(exc))
        # Free the node tree by reference counting while the collector is still paused, so
        # resuming it does not first traverse ~10^5 dead nodes.
        del root
    reader.issues.sort(key=lambda issue: issue.line)  # stable: same-line issues keep their order
    reader.warnings.sort(key=lambda issue: issue.line)
    return SitesFile(path, sites, reader.issues, tuple(reader.status_pages), reader.warnings)


def site_for_url(url: str, *, regex: str | None = None, **overrides: Any) -> Site:
    """Build a validated ad-hoc Site for ``url``, named after its host (``www-example-com``).

    ``overrides`` take any site key in its sites-file form (``timeout="5s"``, ``verify_tls=False``);
    as in a sites file, one the URL's kind of check does not take is an error (``regex`` only
    when not None). Raises ConfigError listing every problem (file ``<command line>``, field =
    the key).
    """
    given = {"name": _adhoc_name(url), "url": url, **({} if regex is None else {"regex": regex})}
    given |= overrides
    issues: list[ConfigIssue] = []
    values: dict[str, Any] = {}
    for key, raw in given.items():
        if key not in FIELDS:
            issues.append(ConfigIssue(CLI_FILE, 0, key, unknown_key(key, FIELDS)))
            continue
        try:
            values[key] = FIELDS[key](raw)
        except Invalid as exc:
            for problem in exc.all():
                field_name = subfield(key, problem.item)
                issues.append(ConfigIssue(CLI_FILE, 0, field_name, problem.message))
    if "url" in values:
        kind = entry_kind(values["url"], bool(values.get("steps")))
        for key in values:
            if problem := kind_problem(key, kind):
                issues.append(ConfigIssue(CLI_FILE, 0, key, problem))
    merged = BUILTIN_DEFAULTS | values
    if not issues:
        for rule in CROSS_KEY_RULES:
            if problem := rule.problem(merged):
                issues.append(ConfigIssue(CLI_FILE, 0, rule.key, problem))
    if issues:
        raise ConfigError(issues)
    return Site(**merged)


def _adhoc_name(url: Any) -> str:
    """The name of an ad-hoc site: its host as sent (IDNA), other characters as ``-``; a DNS
    check's queried name.

    ``bücher.example`` gives ``xn--bcher-kva-example``. Falls back to ``adhoc`` for a URL without
    a usable host; ``check_url`` then reports what is wrong with it.
    """
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        # A DNS check is named after the name it asks for, not its resolver.
        host = "" if parts is None else parts.path.lstrip("/") if parts.scheme == "dns" else None
        host = ascii_host(parts.hostname or "") if host is None else host
    except ValueError:  # an unclosed "[" host, an invalid IDNA label (UnicodeError)
        host = ""
    name = "".join(c if c.isalnum() or c in "_-" else "-" for c in host.lower())
    return name.strip("-_")[:63] or "adhoc"


def _stat_key(info: os.stat_result) -> tuple[int, ...]:
    return info.st_ino, info.st_dev, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _read(path: str) -> bytes:
    """The file's bytes, one more than ``MAX_FILE_BYTES`` at most."""
    with open(path, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def _unreadable(path: str, exc: OSError) -> SitesFile:
    return _failed(path, 0, f"cannot read file: {exc.strerror or exc}")


def _failed(path: str, line: int, message: str) -> SitesFile:
    return SitesFile(path, [], [ConfigIssue(path, line, "<file>", message)])


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "syntax error"
    text = f"{exc.context}, {problem}" if exc.context else problem
    if "'\\t'" in problem:
        text += " (tabs cannot indent YAML; use spaces)"
    return f"invalid YAML: {text}"
