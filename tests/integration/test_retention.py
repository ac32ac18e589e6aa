"""Daily partitions of site_checks, the hourly rollup and retention (migration 4,
sitewatch.storage.retention) against a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from sitewatch.errors import SettingError
from sitewatch.observation import COLUMNS, Observation
from sitewatch.storage.checks import StoreResult, observation_rows, store_batch
from sitewatch.storage.partitions import make_missing, partition_day
from sitewatch.storage.retention import (
    RetentionSettings,
    create_partitions,
    drop_expired_partitions,
    maintain,
    prune_rollups,
    refresh_hourly,
)
from sitewatch.storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from sitewatch.storage.verdicts import record_verdict
from tests.builders import observation

pytestmark = pytest.mark.services

NOW = datetime(2026, 6, 10, 0, 0, tzinfo=UTC)  # midnight: day boundaries fall on the cutoff


def varied_checks(
    seed: int, start: datetime, hours: int, sites: int = 4, locations=("local",)
) -> list[Observation]:
    """Checks every 10 minutes per site and location; some fail and are retried, some lack a
    response time."""
    rng = random.Random(seed)
    checks = []
    for site in (f"site-{i}" for i in range(sites)):
        for step in range(hours * 6):
            at = start + timedelta(minutes=10 * step, seconds=rng.randrange(600))
            for location in locations:
                tries = rng.choice((1, 1, 1, 2, 3))
                for attempt in range(1, tries + 1):
                    final = attempt == tries
                    up = final and rng.random() < 0.8
                    ms = None if rng.random() < 0.15 else round(rng.uniform(5, 3000), 3)
                    obs = observation(
                        site, at, attempt=attempt, final=final, up=up, response_time_ms=ms
                    )
                    checks.append(dataclasses.replace(obs, location=location))
    return checks


def query(conn, sql: str, params=()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.commit()
    return rows


def partitions(conn) -> list[str]:
    return [
        r[0]
        for r in query(
            conn,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'site_checks'::regclass ORDER BY 1",
        )
    ]


def name(day: date) -> str:
    return f"site_checks_p{day:%Y%m%d}"


# The rollups' definitions, straight from the raw rows: per site, hour or day, and location.
DIRECT_HOURLY = """
    SELECT site, date_trunc('hour', scheduled_at, 'UTC') AS hour, location, count(*)::integer,
           (count(*) FILTER (WHERE up))::integer,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms),
           max(response_time_ms)
    FROM site_checks WHERE final GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
HOURLY = "SELECT site, hour, location, checks, ups, p50_ms, p95_ms, max_ms FROM site_checks_hourly"
DIRECT_DAILY = """
    SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, location, count(*)::integer,
           (count(*) FILTER (WHERE up))::integer
    FROM site_checks WHERE final GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
DAILY = "SELECT site, day, location, checks, ups FROM site_checks_daily ORDER BY 1, 2, 3"
# The daily rollup per site (summed over locations), as schemas before migration 6 have it too.
SITE_DAILY = """
    SELECT site, day, sum(checks)::integer, sum(ups)::integer FROM site_checks_daily
    GROUP BY 1, 2 ORDER BY 1, 2
"""
DIRECT_SITE_DAILY = """
    SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, count(*)::integer,
           (count(*) FILTER (WHERE up))::integer
    FROM site_checks WHERE final GROUP BY 1, 2 ORDER BY 1, 2
"""


@pytest.fixture
def db(migrated_conn):
    return migrated_conn


# --- partitions ----------------------------------------------------------------------------------


def test_site_checks_is_range_partitioned_by_day_from_today_on(db):
    assert query(db, "SELECT pg_get_partkeydef('site_checks'::regclass)") == [
        ("RANGE (scheduled_at)",)
    ]
    today = datetime.now(UTC).date()
    # the migration makes today and the next 7 days (if the test straddles midnight, +1 is fine)
    assert {name(today + timedelta(days=i)) for i in range(1, 8)} <= set(partitions(db))
    bounds = query(
        db,
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s",
        (name(today + timedelta(days=1)),),
    )[0][0]
    tomorrow = today + timedelta(days=1)
    assert bounds == (
        f"FOR VALUES FROM ('{tomorrow} 00:00:00+00') TO ('{tomorrow + timedelta(days=1)} "
        "00:00:00+00')"
    )


def test_maintenance_creates_today_and_the_next_seven_days_once(db):
    future = datetime(2031, 2, 27, 23, 59, tzinfo=UTC)
    assert create_partitions(db, future) == 8
    expected = [name(future.date() + timedelta(days=i)) for i in range(8)]
    assert set(expected) <= set(partitions(db))
    assert expected[-1] == "site_checks_p20310306"  # across the end of February
    assert create_partitions(db, future) == 0


def test_store_batch_into_a_day_without_a_partition_creates_it(db):
    days = [datetime(2001, 1, 1, 12, tzinfo=UTC), datetime(2040, 12, 31, 23, 59, tzinfo=UTC)]
    assert name(days[0].date()) not in partitions(db)
    assert store_batch(db, [observation("alpha", at) for at in days]) == StoreResult(2, 0, 0)
    assert {name(d.date()) for d in days} <= set(partitions(db))
    assert query(db, "SELECT count(*) FROM site_checks") == [(2,)]


def test_a_partition_is_made_on_the_scheduled_time_s_utc_day(db):
    # 23:30 at UTC-5 is 04:30 the next day in UTC: it belongs to that UTC day's partition.
    store_batch(
        db,
        [observation("alpha", datetime(2030, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))))],
    )
    assert query(db, "SELECT tableoid::regclass::text FROM site_checks") == [
        ("site_checks_p20300502",)
    ]


def test_redelivery_dedups_across_partitions(db, pg_connect):
    batch = [
        observation(site, NOW + timedelta(hours=h)) for h in range(-30, 30, 3) for site in "ab"
    ]
    assert store_batch(db, batch) == StoreResult(40, 0, 0)
    assert query(db, "SELECT count(DISTINCT tableoid) FROM site_checks") == [(4,)]
    extra = [observation("c", NOW + timedelta(days=3))]
    assert store_batch(db, batch + extra) == StoreResult(1, 40, 0)
    # a new connection (which knows no partition yet) sees the same
    assert store_batch(pg_connect(), batch[::-1] + batch[:5]) == StoreResult(0, 45, 0)
    assert query(db, "SELECT count(*) FROM site_checks") == [(41,)]
    assert query(db, DAILY) == query(db, DIRECT_DAILY)


def test_a_day_dropped_after_the_connection_stored_into_it_is_made_again(db):
    old = datetime(2020, 1, 5, 10, tzinfo=UTC)
    store_batch(db, [observation("alpha", old)])
    assert drop_expired_partitions(db, NOW, 90) == [name(old.date())]
    # this connection remembers the day; the batch must still be stored
    assert store_batch(db, [observation("alpha", old + timedelta(minutes=5))]) == StoreResult(
        1, 0, 0
    )
    assert query(db, "SELECT count(*) FROM site_checks") == [(1,)]


# --- retention -----------------------------------------------------------------------------------


def test_only_days_wholly_past_the_retention_are_dropped(db):
    retention = 10  # cutoff: 2026-05-31 00:00
    days = [date(2026, 5, 29), date(2026, 5, 30), date(2026, 5, 31), date(2026, 6, 1)]
    store_batch(db, [observation("alpha", datetime(d.year, d.month, d.day, h, tzinfo=UTC))
                     for d in days for h in (0, 12, 23)])  # fmt: skip
    # 05-30 ends exactly at the cutoff: every row of it is older, so it goes
    dropped = drop_expired_partitions(db, NOW, retention)
    assert dropped == [name(days[0]), name(days[1])]
    # 05-31 starts exactly at the cutoff: its first row is exactly `retention` days old, it stays
    assert {name(days[2]), name(days[3])} <= set(partitions(db))
    assert query(db, "SELECT min(scheduled_at), count(*) FROM site_checks") == [
        (datetime(2026, 5, 31, tzinfo=UTC), 6)
    ]
    # half a day later the cutoff is inside 05-31: that day straddles it and stays whole
    assert drop_expired_partitions(db, NOW + timedelta(hours=12), retention) == []
    assert query(db, "SELECT count(*) FROM site_checks") == [(6,)]
    assert drop_expired_partitions(db, NOW + timedelta(days=1), retention) == [name(days[2])]


def test_partitions_not_named_by_sitewatch_are_left_alone(db):
    db.execute(
        "CREATE TABLE archive_2000 PARTITION OF site_checks"
        " FOR VALUES FROM ('2000-01-01 00:00+00') TO ('2000-02-01 00:00+00')"
    )
    db.commit()
    assert drop_expired_partitions(db, NOW, 1) == []
    assert "archive_2000" in partitions(db)


def test_hourly_rollup_equals_a_direct_aggregate_also_after_late_rows(db):
    start = NOW - timedelta(hours=40)
    rows = varied_checks(1, start, hours=36, locations=("local", "east"))
    random.Random(2).shuffle(rows)
    store_batch(db, rows[: len(rows) // 2])
    refresh_hourly(db, NOW)  # the first run rolls up everything
    assert query(db, HOURLY + " ORDER BY 1, 2, 3") == query(db, DIRECT_HOURLY)
    # the rest arrives late (within the 48 hours recomputed), some of it in hours already rolled up
    store_batch(db, rows[len(rows) // 2 :])
    written = refresh_hourly(db, NOW)
    direct = query(db, DIRECT_HOURLY)
    assert query(db, HOURLY + " ORDER BY 1, 2, 3") == direct
    assert written == len(direct)
    assert any(r.final and r.response_time_ms is None for r in rows)
    assert any(not r.final for r in rows)
    assert sum(r[3] for r in direct) == sum(1 for r in rows if r.final)
    assert {r[2] for r in direct} == {"local", "east"}


def test_hourly_rollup_catches_up_after_a_pause_and_keeps_hours_before_it(db):
    store_batch(db, varied_checks(3, NOW - timedelta(days=10), hours=3, sites=2))
    refresh_hourly(db, NOW - timedelta(days=9))
    # maintenance paused for 9 days; rows kept arriving
    store_batch(db, varied_checks(4, NOW - timedelta(days=5), hours=3, sites=2))
    refresh_hourly(db, NOW)
    assert query(db, HOURLY + " ORDER BY 1, 2, 3") == query(db, DIRECT_HOURLY)


def test_maintain_keeps_rollups_of_dropped_days_until_their_own_retention(db):
    rows = varied_checks(5, NOW - timedelta(days=4), hours=48, sites=2)  # 06-06 and 06-07
    store_batch(db, rows)
    settings = RetentionSettings(raw_days=2, rollup_days=4)
    hourly_before = query(db, DIRECT_HOURLY)
    daily_before = query(db, DIRECT_DAILY)
    result = maintain(db, NOW, settings)
    assert result.created == 8
    assert result.dropped == [name(date(2026, 6, 6)), name(date(2026, 6, 7))]
    assert result.hourly_rows == len(hourly_before)
    assert result.pruned == 0  # 06-06 00:00 is exactly 4 days old: kept
    assert query(db, "SELECT count(*) FROM site_checks") == [(0,)]
    assert query(db, HOURLY + " ORDER BY 1, 2, 3") == hourly_before
    assert query(db, DAILY) == daily_before
    later = maintain(db, NOW + timedelta(hours=13), settings)
    assert later.dropped == []
    hourly_left = [r for r in hourly_before if r[1] >= datetime(2026, 6, 6, 13, tzinfo=UTC)]
    assert later.pruned == len(hourly_before) - len(hourly_left)
    assert query(db, HOURLY + " ORDER BY 1, 2, 3") == hourly_left
    assert query(db, DAILY) == daily_before  # 06-06 straddles the cutoff: its day stays
    assert prune_rollups(db, NOW + timedelta(days=1), 4) > 0
    assert {r[1] for r in query(db, DAILY)} == {date(2026, 6, 7)}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (90, 730)),
        ({"SITEWATCH_RETENTION_DAYS": " 7 ", "SITEWATCH_ROLLUP_RETENTION_DAYS": ""}, (7, 730)),
        ({"SITEWATCH_ROLLUP_RETENTION_DAYS": "3650"}, (90, 3650)),
    ],
)
def test_settings_from_the_environment(environ, expected):
    assert RetentionSettings.from_env(environ) == RetentionSettings(*expected)


@pytest.mark.parametrize("value", ["0", "-3", "90d", "1.5", "36501", "ninety"])
def test_invalid_settings_name_the_variable(value):
    with pytest.raises(SettingError) as e:
        RetentionSettings.from_env({"SITEWATCH_ROLLUP_RETENTION_DAYS": value})
    assert str(e.value) == (
        f"SITEWATCH_ROLLUP_RETENTION_DAYS={value!r}: expected a whole number of days from 1 to"
        " 36500 (default 730)"
    )


# --- migration 4 on a populated table ------------------------------------------------------------

# Every column but those later migrations added (location 6, maintenance 8, run_id 10, steps 12,
# tls_version 13), so that it sums up the rows before and after it.
CHECKSUM = """
    SELECT count(*),
           md5(string_agg((to_jsonb(t) - 'location' - 'maintenance' - 'run_id' - 'steps'
                           - 'tls_version')::text, '|'
                          ORDER BY site, scheduled_at, attempt))
    FROM site_checks t
"""
# 23,040 rows over 10 days: 8 sites every 6 minutes, every 5th check failed and was retried,
# NULLs in every optional column.
POPULATE = """
    INSERT INTO site_checks (site, url, scheduled_at, attempt, final, checked_at, up,
        status_code, response_time_ms, dns_ms, connect_ms, tls_ms, ttfb_ms, regex, regex_matched,
        error, error_detail, final_url, body_bytes, tls_expires_at, stored_at)
    SELECT 'site-' || s, 'https://s' || s || '.example/',
           timestamptz '2026-03-01 00:00+00' + n * interval '6 minutes', a,
           a = 2 OR n % 5 <> 0, timestamptz '2026-03-01 00:00:07+00' + n * interval '6 minutes',
           a = 2 OR n % 5 <> 0, CASE WHEN n % 13 <> 0 THEN 200 + n % 7 END,
           CASE WHEN n % 11 <> 0 THEN (n * s) % 997 + 0.25 END, nullif(n % 3, 0) * 1.5, 2.5,
           NULL, 40.125, CASE WHEN s % 2 = 0 THEN 'ok|fine' END,
           CASE WHEN s % 2 = 0 THEN n % 4 <> 0 END,
           CASE WHEN n % 5 = 0 AND a = 1 THEN 'timeout' END,
           CASE WHEN n % 5 = 0 AND a = 1 THEN E'tab\\there \u2713' END, 'https://x/' || n,
           n * 1000003::bigint, timestamptz '2027-01-01 00:00+00' + s * interval '1 day',
           timestamptz '2026-03-01 00:00:09.123456+00' + n * interval '6 minutes'
    FROM generate_series(0, 2399) n, generate_series(1, 8) s, generate_series(1, 2) a
    WHERE a = 1 OR n % 5 = 0
"""


def test_migration_4_moves_a_populated_table_without_losing_a_row(pg_conn):
    with pg_conn.cursor() as cur:  # the schema at version 3
        cur.execute("CREATE TABLE sitewatch_schema_version (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        for version in (1, 2, 3):
            cur.execute(MIGRATIONS[version - 1])
            cur.execute("INSERT INTO sitewatch_schema_version VALUES (%s)", (version,))
        cur.execute(POPULATE)
    pg_conn.commit()
    before = query(pg_conn, CHECKSUM)
    daily_before = query(pg_conn, SITE_DAILY)
    days = query(
        pg_conn, "SELECT count(DISTINCT (scheduled_at AT TIME ZONE 'UTC')::date) FROM site_checks"
    )
    assert (before[0][0], days) == (23_040, [(10,)])
    assert daily_before == query(pg_conn, DIRECT_SITE_DAILY)

    assert migrate(pg_conn) == SCHEMA_VERSION
    relkind = "SELECT relkind FROM pg_class WHERE oid = 'site_checks'::regclass"
    assert query(pg_conn, relkind) == [("p",)]
    assert query(pg_conn, CHECKSUM) == before
    assert query(pg_conn, SITE_DAILY) == daily_before  # not counted twice by the copy
    names = set(partitions(pg_conn))
    assert {name(date(2026, 3, 1) + timedelta(days=i)) for i in range(10)} <= names
    assert query(pg_conn, "SELECT to_regclass('site_checks_unpartitioned')") == [(None,)]
    # the trigger is back: new rows (and redelivered ones) keep the daily rollup exact
    late = [observation(f"site-{i}", datetime(2026, 3, 4, 1, 2, 3, tzinfo=UTC), up=i % 2 == 0)
            for i in range(12)]  # fmt: skip
    assert store_batch(pg_conn, late + late[:3]) == StoreResult(12, 3, 0)
    assert store_batch(pg_conn, late) == StoreResult(0, 12, 0)
    assert query(pg_conn, DAILY) == query(pg_conn, DIRECT_DAILY)
    refresh_hourly(pg_conn, datetime(2026, 3, 11, tzinfo=UTC))
    assert query(pg_conn, HOURLY + " ORDER BY 1, 2, 3") == query(pg_conn, DIRECT_HOURLY)


def at_version(conn, version: int) -> None:
    """Build the schema as migrations 1 to ``version`` left it (a database of that release)."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE sitewatch_schema_version (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        for number in range(1, version + 1):
            cur.execute(MIGRATIONS[number - 1])
            cur.execute("INSERT INTO sitewatch_schema_version VALUES (%s)", (number,))
    conn.commit()


def apply(conn, number: int) -> None:
    """Apply migration ``number`` alone, as the release that brought it did."""
    with conn.cursor() as cur:
        cur.execute(MIGRATIONS[number - 1])
        cur.execute("INSERT INTO sitewatch_schema_version VALUES (%s)", (number,))
    conn.commit()


# The hourly rollup as maintenance before migration 6 wrote it: per site and hour.
HOURLY_V5 = """
    INSERT INTO site_checks_hourly (site, hour, checks, ups, p50_ms, p95_ms, max_ms)
    SELECT site, date_trunc('hour', scheduled_at, 'UTC'), count(*), count(*) FILTER (WHERE up),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms),
           max(response_time_ms)
    FROM site_checks WHERE final GROUP BY 1, 2
"""
PRIMARY_KEYS = """
    SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE contype = 'p' AND conrelid = ANY(
        ARRAY['site_checks', 'site_checks_daily', 'site_checks_hourly']::regclass[])
    ORDER BY 1
"""


def test_migration_6_makes_every_stored_row_local_and_keeps_the_rollups(pg_conn):
    at_version(pg_conn, 5)
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(10)]
    with pg_conn.cursor() as cur:
        cur.execute("SELECT site_checks_create_partitions(%s::date[])", (days,))
        cur.execute(POPULATE)
        cur.execute(HOURLY_V5)
    pg_conn.commit()
    before = query(pg_conn, CHECKSUM)
    daily_before = query(pg_conn, "SELECT * FROM site_checks_daily ORDER BY 1, 2")
    hourly_before = query(pg_conn, "SELECT * FROM site_checks_hourly ORDER BY 1, 2")
    assert before[0][0] == 23_040 and daily_before == query(pg_conn, DIRECT_SITE_DAILY)

    assert migrate(pg_conn) == SCHEMA_VERSION
    assert query(pg_conn, CHECKSUM) == before
    assert query(pg_conn, "SELECT location, count(*) FROM site_checks GROUP BY 1") == [
        ("local", 23_040)
    ]
    assert query(pg_conn, DAILY) == [(s, d, "local", c, u) for s, d, c, u in daily_before]
    assert query(pg_conn, HOURLY + " ORDER BY 1, 2, 3") == [
        (s, h, "local", *figures) for s, h, *figures in hourly_before
    ]
    assert query(pg_conn, PRIMARY_KEYS) == [
        ("site_checks", "site_checks_pkey", "PRIMARY KEY (site, scheduled_at, location, attempt)"),
        ("site_checks_daily", "site_checks_daily_pkey", "PRIMARY KEY (site, day, location)"),
        ("site_checks_hourly", "site_checks_hourly_pkey", "PRIMARY KEY (site, hour, location)"),
    ]
    # A second location's checks of the same runs are new rows; the rollups count them apart.
    late = [
        observation(
            f"site-{i}", datetime(2026, 3, 10, 1, 2, 3, tzinfo=UTC), up=i % 2 == 0, location=loc
        )
        for i in range(1, 4)
        for loc in ("local", "east")
    ]
    assert store_batch(pg_conn, late + late[:2]) == StoreResult(6, 2, 0)
    assert query(pg_conn, DAILY) == query(pg_conn, DIRECT_DAILY)
    refresh_hourly(pg_conn, datetime(2026, 3, 11, tzinfo=UTC))
    assert query(pg_conn, HOURLY + " ORDER BY 1, 2, 3") == query(pg_conn, DIRECT_HOURLY)
    assert query(pg_conn, "SELECT count(*) FROM site_checks_hourly WHERE location = 'east'") == [
        (3,)
    ]


def test_verdicts_are_pruned_on_the_rollup_retention(db):
    cutoff = NOW - timedelta(days=4)
    for at in (cutoff - timedelta(microseconds=1), cutoff, NOW):
        assert record_verdict(db, "alpha", at, "partial", 2, {"east": "up", "west": "down"})
    assert prune_rollups(db, NOW, 4) == 1
    assert query(db, "SELECT scheduled_at FROM site_verdicts ORDER BY 1") == [(cutoff,), (NOW,)]


def test_partition_day_reads_only_sitewatch_names():
    assert partition_day("site_checks_p20261128") == date(2026, 11, 28)
    for other in ("site_checks_p20260230", "site_checks_p2026112", "archive_2000", "site_checks"):
        assert partition_day(other) is None


def store_before(version: int, conn, observations: list[Observation]) -> None:
    """Insert as a drain of a version before migration ``version`` (8 or 10) did: every column
    but those that migration and the later ones added (``added``)."""
    added = {"maintenance": 8, "run_id": 10, "steps": 12, "tls_version": 13}
    names = [c.name for c in COLUMNS if added.get(c.name, 0) < version]
    days = sorted({o.scheduled_at.astimezone(UTC).date() for o in observations})
    with conn.cursor() as cur:  # as the drain makes them: the day's partition first
        make_missing(cur, days, None)
    rows = [
        dict(zip([c.name for c in COLUMNS], row, strict=True))
        for row in observation_rows(observations)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO site_checks ({', '.join(names)}) "
            f"VALUES ({', '.join(f'%({n})s' for n in names)})",
            rows,
        )
    conn.commit()


REFRESH_HOURLY_BEFORE_8 = """
    INSERT INTO site_checks_hourly (site, hour, location, checks, ups, p50_ms, p95_ms, max_ms)
    SELECT site, date_trunc('hour', scheduled_at, 'UTC'), location,
           count(*), count(*) FILTER (WHERE up),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms),
           max(response_time_ms)
    FROM site_checks WHERE final GROUP BY 1, 2, 3
"""


def test_migration_7_marks_up_attempts_final_and_recounts_the_kept_days(pg_conn):
    at_version(pg_conn, 6)
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(3)]
    healthy = [  # as versions before 7 stored them: up on try 1 of 3, so not final
        observation(
            f"site-{s}", datetime(2026, 3, 1 + d, h, 0, 5, tzinfo=UTC), up=True, final=False
        )
        for d in range(3)
        for h in range(0, 24, 6)
        for s in (1, 2)
    ]
    retried = [  # down on try 1, up on try 2 (also not final then), each once a day
        observation(
            "site-3", datetime(2026, 3, 1 + d, 12, 30, tzinfo=UTC), up=up, final=False, attempt=a
        )
        for d in range(3)
        for a, up in ((1, False), (2, True))
    ]
    with pg_conn.cursor() as cur:
        cur.execute("SELECT site_checks_create_partitions(%s::date[])", (days,))
        # a day whose raw rows were dropped long ago: its rollup has nothing to be recounted from
        cur.execute(
            "INSERT INTO site_checks_daily (site, day, location, checks, ups)"
            " VALUES ('site-1', '2026-01-01', 'local', 100, 99)"
        )
    pg_conn.commit()
    down = observation("site-4", datetime(2026, 3, 3, 12, 0, tzinfo=UTC), up=False)  # final
    store_before(8, pg_conn, [*healthy, *retried, down])
    with pg_conn.cursor() as cur:  # as maintenance did before migration 8
        cur.execute(REFRESH_HOURLY_BEFORE_8)
    pg_conn.commit()
    counted = "SELECT sum(checks) FROM site_checks_daily WHERE day > '2026-01-01'"
    assert query(pg_conn, counted) == [(1,)]  # not one of the 27 up checks was counted
    assert query(pg_conn, "SELECT max(hour) FROM site_checks_hourly") == [
        (datetime(2026, 3, 3, 12, tzinfo=UTC),)
    ]

    apply(pg_conn, 7)
    assert query(pg_conn, "SELECT count(*) FROM site_checks WHERE up AND NOT final") == [(0,)]
    assert query(pg_conn, "SELECT count(*) FROM site_checks WHERE final") == [(28,)]
    assert query(pg_conn, DAILY) == [
        ("site-1", date(2026, 1, 1), "local", 100, 99),
        *query(pg_conn, DIRECT_DAILY),
    ]
    # the hours maintenance had rolled up are recounted; the later ones are left to it
    rolled_up = [row for row in query(pg_conn, DIRECT_HOURLY) if row[1] <= down.scheduled_at]
    assert query(pg_conn, HOURLY + " ORDER BY 1, 2, 3") == rolled_up
    assert migrate(pg_conn) == SCHEMA_VERSION
    refresh_hourly(pg_conn, datetime(2026, 3, 4, tzinfo=UTC))
    assert query(pg_conn, HOURLY + " ORDER BY 1, 2, 3") == query(pg_conn, DIRECT_HOURLY)
    per_site = (
        "SELECT site, sum(checks), sum(ups) FROM site_checks_daily"
        " WHERE day > '2026-01-01' GROUP BY 1 ORDER BY 1"
    )
    assert query(pg_conn, per_site) == [
        ("site-1", 12, 12),
        ("site-2", 12, 12),
        ("site-3", 3, 3),
        ("site-4", 1, 0),
    ]
