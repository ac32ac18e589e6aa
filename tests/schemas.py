"""Throwaway schemas of the results database: empty, or already at the current schema version.

Every test that stores or reads rows needs the tables, and ``migrate`` builds them step by step
(nine migrations, ten transactions: one template schema costs ~65 ms on the 2-core development
machine). ``clone`` copies a template instead: the first call of a test process (and of each UTC
day, since migrate names partitions after the day) migrates one template schema, keeps its
``pg_dump`` and drops it; every call then replays that dump, which PostgreSQL runs in one
transaction, in ~45 ms. The copy is what ``migrate`` leaves: tables and their partitions,
triggers, functions (their ``search_path`` names the copy), the roles' privileges, the version
rows and the counters; tests/integration/test_storage.py holds the two equal.

Tests of ``migrate`` itself, of upgrades from an older version and of a schema the owner role
migrates keep calling ``migrate``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sitewatch.storage.schema import migrate

# (dsn, UTC day) -> (the template's name, its dump)
_templates: dict[tuple[str, object], tuple[str, str]] = {}


def create(dsn: str) -> str:
    """Create an empty schema ``t_<random>`` and return its name."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    return schema


def drop(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


def clone(dsn: str, schema: str) -> None:
    """Bring the empty ``schema`` to the current version as ``migrate`` would, from the template.

    dsn: a superuser's, as the tests' (the copy's objects belong to its user, as migrate's
    would). Raises psycopg.Error when PostgreSQL refuses, RuntimeError without pg_dump.
    """
    template, ddl = _template(dsn)
    with psycopg.connect(dsn, autocommit=True) as admin, admin.transaction():
        admin.execute(ddl.replace(template, schema))


def dump(dsn: str, schema: str, *, data: bool = True) -> str:
    """``pg_dump`` of one schema (its objects without owners; rows as INSERTs when ``data``)."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = {**os.environ, "PGPASSWORD": password} if password else None  # not on a command line
    command = [_pg_dump(), "--dbname", make_conninfo(**params), "--schema", schema, "--no-owner"]
    command += ["--inserts"] if data else ["--schema-only"]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


def _template(dsn: str) -> tuple[str, str]:
    key = (dsn, datetime.now(UTC).date())
    if key not in _templates:
        template = create(dsn)
        try:
            with psycopg.connect(dsn, options=f"-c search_path={template}") as conn:
                migrate(conn)
            text = dump(dsn, template)
        finally:
            drop(dsn, template)
        # the target schema exists already; lines such as \restrict are psql's, not SQL
        lines = [
            line
            for line in text.splitlines()
            if line != f"CREATE SCHEMA {template};" and not line.startswith("\\")
        ]
        _templates[key] = (template, "\n".join(lines))
    return _templates[key]


def _pg_dump() -> str:
    """pg_dump from PATH, else from the server's own binaries (where scripts/dev.sh finds them)."""
    found = shutil.which("pg_dump") or max(
        glob.glob("/usr/lib/postgresql/*/bin/pg_dump"),
        key=lambda path: int(path.split("/")[4]),
        default=None,
    )
    if found is None:
        raise RuntimeError("pg_dump not found: install PostgreSQL's client programs")
    return found


def store_as_old_drain(conn: psycopg.Connection, at: datetime, site: str = "old") -> None:
    """One up check of ``site`` at ``at``, inserted as a drain from before the optional columns
    (location, maintenance, run_id, steps, tls_version) would: only the columns it always had."""
    with conn.cursor() as cur:
        cur.execute("SELECT site_checks_create_partitions(ARRAY[%s::date])", (at.date(),))
        cur.execute(
            "INSERT INTO site_checks (site, url, scheduled_at, attempt, final, checked_at, up)"
            " VALUES (%s, %s, %s, 1, true, %s, true)",
            (site, f"https://{site}.example/", at, at),
        )
    conn.commit()
