"""Validated sites files kept on disk, so that a fresh process need not validate the file again.

Airflow's DAG processor parses ``dags/sites.py`` in a new process every time, and every task run
parses it once more: nothing in memory survives from one parse to the next. This cache stores each
validated ``SitesFile`` as a pickle under a key that covers everything the result depends on: the
path (it labels the result and its issues), the file's bytes, and the code that validated them
(``code_version``). A different key is a miss, so an entry can never serve a stale or another
file's result. Each path has one cache file, replaced when its content changes.

The cache lives in ``$SITEWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/sitewatch``, else
``~/.cache/sitewatch``. Unpickling runs code named in the file, so the directory must be owned by
this user and closed to everyone else (created 0700; a directory that is not private is not used),
and each file is 0600, written to a temporary name and renamed into place. A file under another
key is a miss; one that is unreadable, damaged (its checksum) or not private is ignored with a
warning. Either way the result is validated again and the file replaced.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import hashlib
import io
import logging
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path

import idna
import regex
import yaml

from sitewatch.config.site import Site, SitesFile
from sitewatch.config.yamltree import no_gc

log = logging.getLogger(__name__)

DIR_VAR = "SITEWATCH_CACHE_DIR"
# A cache file: _MAGIC, the key, the sha256 of the pickle (a damaged file is never unpickled into
# wrong sites), the pickle.
_MAGIC = b"sitewatch-sites-cache 1\n"
_HASH = hashlib.sha256().digest_size
_HEAD = len(_MAGIC) + _HASH  # magic and key
# Site.__post_init__ freezes a headers dict, so a Site pickles as its constructor call: no reducer
# for MappingProxyType is needed, and unpickling is a third faster than dataclass __setstate__.
_FIELDS = tuple(field.name for field in dataclasses.fields(Site))


def _reduce_site(site: Site):
    return Site, tuple(
        dict(site.headers) if name == "headers" else getattr(site, name) for name in _FIELDS
    )


_DISPATCH = {**copyreg.dispatch_table, Site: _reduce_site}


def cache_dir() -> Path | None:
    """The private cache directory, created if missing; None when it cannot be used."""
    try:
        base = os.environ.get(DIR_VAR) or (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sitewatch"
        )
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.stat(base)
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory to expand
        log.warning("sites cache off: no cache directory: %s", exc)
        return None
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        log.warning("sites cache off: %s is not a directory private to this user (0700)", base)
        return None
    return Path(base)


def cache_key(path: str, digest: bytes) -> bytes:
    """The key of ``path`` with content hash ``digest``, validated by this code."""
    return hashlib.sha256(b"\0".join([code_version(), os.fsencode(path), digest])).digest()


def read(directory: Path, path: str, key: bytes) -> SitesFile | None:
    """The cached result for ``path`` under ``key``, or None (missing, stale or unusable)."""
    file = _file(directory, path)
    try:
        with open(file, "rb", opener=_open_private) as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("sites cache: ignoring %s: %s", file, exc)
        return None
    head, checksum, payload = data[:_HEAD], data[_HEAD : _HEAD + _HASH], data[_HEAD + _HASH :]
    if head != _MAGIC + key:
        return None  # another content, path or code version
    try:
        if hashlib.sha256(payload).digest() != checksum:
            raise ValueError("checksum mismatch: truncated or damaged")
        with no_gc():  # ~10^5 new objects at 10,000 sites, none of them garbage
            return pickle.loads(payload)
    except Exception as exc:  # a damaged pickle can raise almost anything
        log.warning("sites cache: ignoring damaged %s: %s", file, exc)
        return None


def write(directory: Path, path: str, key: bytes, result: SitesFile) -> None:
    """Store ``result`` for ``path`` under ``key``; failing to is only logged."""
    try:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = _DISPATCH
        pickler.dump(result)
        payload = buffer.getbuffer()
        handle, temporary = tempfile.mkstemp(prefix=".sites-", dir=directory)  # mode 0600
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(_MAGIC + key + hashlib.sha256(payload).digest())
                out.write(payload)
            os.replace(temporary, _file(directory, path))
        except BaseException:
            os.unlink(temporary)
            raise
    except Exception as exc:  # the cache must never break loading
        log.warning("sites cache: cannot write to %s: %s", directory, exc)


@functools.cache
def code_version() -> bytes:
    """A hash of what decides a validation result: the sources of ``sitewatch.config`` and of
    ``sitewatch.observation`` (the site-name rule), the YAML, regex and IDNA libraries' versions,
    and Python's (the pickle of stdlib values)."""
    package = Path(__file__).resolve().parent
    sources = [*sorted(package.glob("*.py")), package.parent / "observation.py"]
    digest = hashlib.sha256()
    for part in (sys.version, yaml.__version__, regex.__version__, idna.__version__):
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(source.read_bytes() + b"\0")
    return digest.digest()


def _file(directory: Path, path: str) -> Path:
    return directory / f"sites-{hashlib.sha256(os.fsencode(path)).hexdigest()[:32]}.pickle"


def _open_private(name: str, flags: int) -> int:
    """Open a cache file only if it is a regular file of this user's, closed to others."""
    fd = os.open(name, flags | os.O_NOFOLLOW)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        os.close(fd)
        raise PermissionError(f"not a private file of this user (mode {info.st_mode:o})")
    return fd
