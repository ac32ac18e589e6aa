"""The scratch schema of bench/metrics.py: 10 million checks of 1,000 sites, loaded by
``bench/dashboard_load.sql`` and upgraded one migration at a time, each step timed; kept (with
its timings) for the next run when asked, and reused while the load script and the schema
version are unchanged.

Needs SITEWATCH_PG_DSN (``source .state/env.sh``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import psycopg
from common import ROOT, loadavg

from sitewatch.storage import schema
from sitewatch.storage.retention import refresh_hourly

LOAD_SQL = ROOT / "bench" / "dashboard_load.sql"


def connect(dsn: str, name: str):
    return psycopg.connect(dsn, options=f"-c search_path={name}")


def prepared(dsn: str, name: str) -> dict:
    """The scratch schema ``name`` loaded and migrated: reused when a kept one matches the load
    script and this code's schema version, else loaded afresh (``load_and_upgrade``). Returns
    its facts: rows, load and per-step upgrade seconds, when it was loaded, whether reused."""
    digest = hashlib.sha256(LOAD_SQL.read_bytes()).hexdigest()
    with connect(dsn, name) as conn:
        kept = conn.execute("SELECT to_regclass('bench_load') IS NOT NULL").fetchone()[0]
        if kept and schema.version(conn) == schema.SCHEMA_VERSION:
            sha, facts = conn.execute("SELECT script_sha, facts FROM bench_load").fetchone()
            if sha == digest:
                print(f"reusing schema {name} (loaded {facts['loaded_at']})", flush=True)
                return {**facts, "reused": True}
    facts = load_and_upgrade(dsn, name)
    with connect(dsn, name) as conn:
        conn.execute("CREATE TABLE bench_load (script_sha text, facts jsonb)")
        conn.execute("INSERT INTO bench_load VALUES (%s, %s)", (digest, json.dumps(facts)))
    return {**facts, "reused": False}


def load_and_upgrade(dsn: str, name: str) -> dict:
    """Load 10M checks with psql, then migrate 2..N one version at a time (each timed), with
    maintenance's hourly rollup computed before migration 9 as a version-8 database has it."""
    print(f"loading {LOAD_SQL.name} into {name} (about a minute) ...", flush=True)
    start = time.perf_counter()
    psql = ["psql", "-Xq", "-v", "ON_ERROR_STOP=1", "-v", f"schema={name}", "-f", str(LOAD_SQL)]
    quiet = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}  # no "skipping" notice
    subprocess.run([*psql, "-d", os.environ["SITEWATCH_PG_DSN"]], check=True, env=quiet)
    load_s = time.perf_counter() - start
    steps = []
    with connect(dsn, name) as conn:
        # As bench/dashboard.py: the load script made migration 1's table; record it.
        conn.execute(
            "CREATE TABLE sitewatch_schema_version (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO sitewatch_schema_version VALUES (1)")
        # ... but not migration 1's other table, which migration 9 counts
        conn.execute(from_migration(1, r"CREATE TABLE site_checks_rejected .*?\);"))
        conn.commit()
        rows = conn.execute("SELECT count(*) FROM site_checks").fetchone()[0]
        for version in range(2, schema.SCHEMA_VERSION + 1):
            if version == 9:
                # the maintenance DAG's hourly rollup, all of it the first time (untimed by the
                # upgrade: a version-8 database has it already)
                label = "refresh_hourly (maintenance, at version 8)"
                steps.append(timed_step(label, lambda: refresh_hourly(conn, datetime.now(UTC))))
            # migrate applies every pending version; capping the code's version times each alone
            with mock.patch.object(schema, "SCHEMA_VERSION", version):
                steps.append(timed_step(f"migration {version}", lambda: schema.migrate(conn)))
        steps.append(timed_step("ANALYZE (as autovacuum would)", lambda: analyze(conn)))
    return {
        "rows": rows,
        "load_s": load_s,
        "steps": steps,
        "loaded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_avg": loadavg(),
    }


def analyze(conn) -> None:
    conn.execute("ANALYZE")
    conn.commit()


def timed_step(label: str, fn) -> dict:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"  {label}: {seconds:.1f} s  load {loadavg()}", flush=True)
    return {"step": label, "seconds": seconds}


def data_now(conn) -> datetime:
    """The clock of every measurement: two minutes after the newest stored check. The data
    ends when it was loaded, so a fixed clock gives a kept schema the same windows later."""
    newest = conn.execute("SELECT max(scheduled_at) FROM site_latest").fetchone()
    return newest[0] + timedelta(minutes=2)


def from_migration(number: int, pattern: str) -> str:
    """The first match of ``pattern`` in migration ``number``'s SQL: statements of a frozen
    migration, taken from it rather than copied here."""
    found = re.search(pattern, schema.MIGRATIONS[number - 1], re.S)
    if found is None:
        raise SystemExit(f"{pattern!r} not found in migration {number}")
    return found.group(0)
