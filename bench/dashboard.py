"""Measure the dashboard's queries on a large site_checks, and what migration 3 costs the drain.

    psql -v schema=dashbench -f bench/dashboard_load.sql   # 10M rows, ~1 min
    python bench/dashboard.py dashbench                    # migrates, then measures

Needs SITEWATCH_PG_DSN (``source .state/env.sh``). The figures go into docs/dashboard.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from metrics_schema import from_migration

from sitewatch.observation import Observation
from sitewatch.storage import queries
from sitewatch.storage.checks import store_batch
from sitewatch.storage.schema import migrate

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.builders
from tests.builders import observation  # noqa: E402


def timed(fn, runs: int = 5) -> tuple[float, float]:
    """(first, median of the rest) wall time of ``fn()`` in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times[0], statistics.median(times[1:])


def explain(conn, sql: str, params: dict) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    return "\n".join(r[0] for r in rows)


def queries_bench(dsn: str, schema: str) -> None:
    conn = psycopg.connect(dsn, options=f"-c search_path={schema}")
    # The load script makes migration 1's tables by hand; record that so migrate adds the rest.
    with conn.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sitewatch_schema_version (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO sitewatch_schema_version VALUES (1) ON CONFLICT DO NOTHING")
        # ... but not migration 1's other table, which migration 9 counts
        rejected = from_migration(1, r"CREATE TABLE site_checks_rejected .*?\);")
        conn.execute(rejected.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
    start = time.perf_counter()
    version = migrate(conn)
    print(f"migrate to {version}: {(time.perf_counter() - start) * 1000:.0f} ms")
    conn.execute("ANALYZE")
    conn.commit()
    now = datetime.now(UTC)
    site = "site-0500"
    rows = conn.execute("SELECT count(*) FROM site_checks").fetchone()[0]
    print(f"site_checks rows: {rows}")
    cases = {
        "listing (1,000 sites)": lambda: queries.site_summaries(conn, now),
        "one site's summary": lambda: queries.site_summary(conn, site, now),
        "recent 200 attempts": lambda: queries.recent_attempts(conn, site, now),
        "24 h response series": lambda: queries.response_series(
            conn, site, now - timedelta(hours=24), now
        ),
    }
    for name, fn in cases.items():
        first, median = timed(fn)
        print(f"{name}: first {first:.1f} ms, median {median:.1f} ms")
    plan = explain(conn, queries._SUMMARY.format(names=queries._SITE_NAMES), queries._windows(now))
    print("\nEXPLAIN listing (tail):\n" + "\n".join(plan.splitlines()[-3:]))
    print("\n" + plan)
    conn.rollback()


def observations(count: int, start: datetime) -> list[Observation]:
    sites = [f"s{i:03d}" for i in range(100)]
    return [
        observation(
            sites[i % 100],
            start + timedelta(minutes=i // 100),
            up=i % 50 != 0,
            url="https://example.com/",
            checked_at=start,
            response_time_ms=12.5,
        )
        for i in range(count)
    ]


def insert_bench(dsn: str, batches: int = 20, size: int = 5000) -> None:
    """Drain-like inserts (store_batch, 5,000 rows) with and without migration 3's trigger."""
    for trigger in (False, True, False, True):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        try:
            with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
                migrate(conn)
                if not trigger:
                    conn.execute("DROP TRIGGER site_checks_daily ON site_checks")
                    conn.commit()
                base = datetime(2026, 1, 1, tzinfo=UTC)
                times = []
                for b in range(batches):
                    batch = observations(size, base + timedelta(days=b))
                    start = time.perf_counter()
                    store_batch(conn, batch)
                    times.append(time.perf_counter() - start)
            rate = size / statistics.median(times)
            label = "with rollup trigger" if trigger else "without trigger    "
            print(f"store_batch {label}: {rate:,.0f} rows/s (median of {batches} batches)")
        finally:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    dsn = os.environ["SITEWATCH_PG_DSN"]
    queries_bench(dsn, sys.argv[1] if len(sys.argv) > 1 else "dashbench")
    insert_bench(dsn)
