"""sitewatch.storage.queries and migration 3's daily rollup against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.observation import Observation
from sitewatch.storage import queries
from sitewatch.storage.checks import store_batch
from sitewatch.storage.schema import migrate

pytestmark = pytest.mark.services

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def check(site: str, ago: timedelta, *, up=True, attempt=1, final=True, ms=100.0, error=None):
    at = NOW - ago
    return Observation(
        site=site,
        url=f"https://{site}.example/",
        checked_at=at,
        up=up,
        scheduled_at=at,
        attempt=attempt,
        final=final,
        status_code=200 if up else 503,
        response_time_ms=ms,
        error=error,
        error_detail=f"{error} detail" if error else None,
        tls_expires_at=NOW + timedelta(days=30) if up else None,
    )


@pytest.fixture
def conn(pg_conn):
    migrate(pg_conn)
    return pg_conn


def test_summaries_count_final_attempts_per_window(conn):
    hour, day = timedelta(hours=1), timedelta(days=1)
    store_batch(
        conn,
        [
            check("alpha", hour, ms=100.0),
            check("alpha", 2 * hour, ms=300.0),
            # a retried failure: attempt 1 is not final, attempt 2 is the verdict
            check("alpha", 3 * hour, up=False, final=False, ms=900.0, error="status"),
            check("alpha", 3 * hour, attempt=2, ms=200.0),
            check("alpha", 3 * day, up=False, error="timeout"),
            check("alpha", 20 * day),
            check("alpha", 40 * day),  # outside every window
            check("beta", 10 * day, up=False, error="connect"),
        ],
    )
    alpha, beta = queries.site_summaries(conn, NOW)
    assert (alpha.site, beta.site) == ("alpha", "beta")
    assert alpha.last_up and alpha.last_scheduled_at == NOW - hour
    assert (alpha.checks_24h, alpha.ups_24h) == (3, 3)
    assert (alpha.checks_7d, alpha.ups_7d) == (4, 3)
    assert (alpha.checks_30d, alpha.ups_30d) == (5, 4)
    assert alpha.p50_ms == 200.0 and alpha.p95_ms == pytest.approx(290.0)
    assert (alpha.last_error, alpha.last_error_at) == ("status", NOW - 3 * hour)
    assert alpha.tls_expires_at == NOW + timedelta(days=30)
    assert beta.last_up is False and beta.checks_24h == 0 and beta.checks_30d == 1
    assert beta.last_error is None and beta.p50_ms is None
    assert queries.site_summary(conn, "beta", NOW) == beta
    assert queries.site_summary(conn, "gamma", NOW) is None


def test_rollup_ignores_redelivered_duplicates(conn):
    batch = [check("alpha", timedelta(hours=h)) for h in range(1, 5)]
    store_batch(conn, batch)
    result = store_batch(conn, batch + [check("alpha", timedelta(hours=6), up=False)])
    assert (result.inserted, result.duplicates) == (1, 4)
    summary = queries.site_summary(conn, "alpha", NOW)
    assert (summary.checks_30d, summary.ups_30d) == (5, 4)
    rows = conn.execute("SELECT sum(checks), sum(ups) FROM site_checks_daily").fetchone()
    assert rows == (5, 4)


def test_migration_backfills_rows_stored_before_it(pg_conn):
    from sitewatch.storage.schema import MIGRATIONS

    with pg_conn.cursor() as cur:  # the schema as it was before migration 3
        cur.execute("CREATE TABLE sitewatch_schema_version (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        cur.execute(MIGRATIONS[0])
        cur.execute("INSERT INTO sitewatch_schema_version VALUES (1)")
    pg_conn.commit()
    store_batch(pg_conn, [check("alpha", timedelta(days=d)) for d in range(3)])
    migrate(pg_conn)
    summary = queries.site_summary(pg_conn, "alpha", NOW)
    assert (summary.checks_7d, summary.checks_30d) == (3, 3)


def test_recent_attempts_and_series(conn):
    store_batch(
        conn,
        [check("alpha", timedelta(minutes=m)) for m in range(5, 30, 5)]
        + [check("alpha", timedelta(hours=30))],
    )
    recent = queries.recent_attempts(conn, "alpha", NOW, limit=3)
    assert [a.scheduled_at for a in recent] == [NOW - timedelta(minutes=m) for m in (5, 10, 15)]
    series = queries.response_series(conn, "alpha", NOW - timedelta(hours=24), NOW)
    assert len(series) == 5 and series[0][0] < series[-1][0]
