"""sitewatch.storage.queries and migration 3's daily rollup against a real PostgreSQL; the
queries of sites checked from several locations (migration 6); maintenance left out of the
figures (migration 8)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.observation import Observation
from sitewatch.storage import queries
from sitewatch.storage.checks import store_batch
from sitewatch.storage.schema import migrate
from sitewatch.storage.verdicts import record_verdict
from tests.builders import observation

pytestmark = pytest.mark.services

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def check(site: str, ago: timedelta, *, up=True, ms=100.0, error=None, **fields) -> Observation:
    """A check of ``site`` ``ago`` before NOW; one that is down names ``error`` (by default none),
    one that is up saw a certificate valid for 30 more days."""
    return observation(
        site,
        NOW - ago,
        up=up,
        response_time_ms=ms,
        error=error,
        error_detail=f"{error} detail" if error else None,
        tls_expires_at=NOW + timedelta(days=30) if up else None,
        **fields,
    )


@pytest.fixture
def conn(migrated_conn):
    return migrated_conn


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


def test_summaries_leave_maintenance_out_of_uptimes_and_percentiles(conn):
    hour, day = timedelta(hours=1), timedelta(days=1)
    down = check("alpha", hour, up=False, ms=900.0, error="status")
    store_batch(
        conn,
        [
            dataclasses.replace(down, maintenance=True),  # the latest: the state, not a figure
            check("alpha", 2 * hour, ms=100.0),
            check("alpha", 3 * hour, ms=300.0),
            dataclasses.replace(check("alpha", 2 * day, up=False), maintenance=True),
            check("alpha", 3 * day),
        ],
    )
    alpha = queries.site_summary(conn, "alpha", NOW)
    assert alpha.last_up is False and alpha.last_scheduled_at == NOW - hour
    assert (alpha.checks_24h, alpha.ups_24h) == (2, 2)
    assert alpha.p50_ms == 200.0 and alpha.p95_ms == pytest.approx(290.0)
    assert (alpha.checks_7d, alpha.ups_7d) == (3, 3)  # the daily rollup leaves it out too
    assert alpha.last_error == "status"  # the error is still shown


def test_a_site_checked_from_two_locations_counts_both(conn):
    hour, day = timedelta(hours=1), timedelta(days=1)
    batch = [
        check("alpha", hour, location="east", ms=100.0),
        check("alpha", hour, location="west", up=False, error="status", ms=300.0),
        check("alpha", 2 * hour, location="east", up=False, final=False, error="timeout"),
        check("alpha", 2 * hour, location="east", attempt=2, ms=200.0),
        check("alpha", 2 * hour, location="west", ms=400.0),
        check("alpha", 3 * day, location="west"),
    ]
    store_batch(conn, batch)
    (alpha,) = queries.site_summaries(conn, NOW)
    assert (alpha.checks_24h, alpha.ups_24h) == (4, 3)  # final attempts of both locations
    assert (alpha.checks_7d, alpha.ups_7d) == (5, 4)
    assert (alpha.checks_30d, alpha.ups_30d) == (5, 4)
    assert alpha.p50_ms == 250.0
    assert alpha.last_scheduled_at == NOW - hour
    assert (alpha.last_error, alpha.last_error_at) == ("status", NOW - hour)
    assert queries.site_summary(conn, "alpha", NOW) == alpha
    daily = conn.execute(
        "SELECT location, sum(checks), sum(ups) FROM site_checks_daily GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert daily == [("east", 2, 2), ("west", 3, 2)]
    assert len(queries.recent_attempts(conn, "alpha", NOW)) == len(batch)


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
        # rows as that schema holds them (store_batch writes today's columns, location among them)
        for d in range(3):
            at = NOW - timedelta(days=d)
            cur.execute(
                "INSERT INTO site_checks (site, url, scheduled_at, attempt, final, checked_at, up)"
                " VALUES ('alpha', 'https://alpha.example/', %s, 1, true, %s, true)",
                (at, at),
            )
    pg_conn.commit()
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


FIVE = timedelta(minutes=5)


def test_latest_by_location_is_each_locations_last_decided_attempt(conn):
    store_batch(
        conn,
        [
            check("multi", 2 * FIVE, location="eu"),
            # still retrying: not decided, so eu's latest is the run before
            check("multi", FIVE, location="eu", up=False, final=False, error="timeout"),
            check("multi", 2 * FIVE, location="us", up=False, error="status"),
            # up on attempt 1 of 3: not final, but up ends the location's retries
            check("multi", FIVE, location="us", final=False),
            check("multi", timedelta(days=40), location="ap"),  # before the window
            check("other", FIVE, location="eu"),  # not asked about
        ],
    )
    found = queries.latest_by_location(conn, {"multi": ("eu", "us", "ap")}, NOW)
    assert list(found) == ["multi"] and set(found["multi"]) == {"eu", "us"}
    eu, us = found["multi"]["eu"], found["multi"]["us"]
    assert (eu.scheduled_at, eu.up, eu.error) == (NOW - 2 * FIVE, True, None)
    assert (us.scheduled_at, us.up, us.location) == (NOW - FIVE, True, "us")
    down = queries.latest_by_location(conn, {"multi": ("us",)}, NOW - FIVE - FIVE / 2)
    assert (down["multi"]["us"].up, down["multi"]["us"].error) == (False, "status")
    assert queries.latest_by_location(conn, {}, NOW) == {}


def test_recent_runs_hold_each_locations_part_and_the_verdict(conn):
    store_batch(
        conn,
        [
            check("multi", FIVE, location="eu"),
            check("multi", FIVE, location="us", up=False, final=False, error="connect"),
            check("multi", 2 * FIVE, location="eu", up=False, error="status"),
            check("multi", 2 * FIVE, location="us", up=False, final=False, error="timeout"),
            check("multi", 2 * FIVE, location="us", attempt=2, up=False, error="status"),
            check("multi", 3 * FIVE, location="eu"),
            check("multi", timedelta(days=40), location="eu"),  # before the window
            check("other", FIVE, location="eu"),
        ],
    )
    record_verdict(conn, "multi", NOW - 2 * FIVE, "down", 2, {"eu": "down", "us": "down"})
    runs = queries.recent_runs(conn, "multi", NOW)
    assert [r.scheduled_at for r in runs] == [NOW - FIVE, NOW - 2 * FIVE, NOW - 3 * FIVE]
    latest, decided, older = runs
    assert (latest.verdict, latest.quorum) == (None, None) and set(latest.locations) == {"eu", "us"}
    retrying = latest.locations["us"]
    assert (retrying.up, retrying.final, retrying.attempts, retrying.error) == (
        False, False, 1, "connect",
    )  # fmt: skip
    us = decided.locations["us"]
    assert (us.up, us.final, us.attempts, us.error) == (False, True, 2, "status")  # its latest
    assert (decided.verdict, decided.quorum) == ("down", 2)
    assert set(older.locations) == {"eu"} and older.locations["eu"].up
    assert len(queries.recent_runs(conn, "multi", NOW, limit=2)) == 2
    assert queries.recent_runs(conn, "nosuchsite", NOW) == []


def test_recent_attempts_name_their_location(conn):
    store_batch(conn, [check("multi", FIVE, location=loc) for loc in ("eu", "us")])
    store_batch(conn, [check("shop", FIVE)])
    assert [a.location for a in queries.recent_attempts(conn, "multi", NOW)] == ["us", "eu"]
    assert [a.location for a in queries.recent_attempts(conn, "shop", NOW)] == ["local"]
