"""The reads behind /sitewatch/metrics and the tables migration 9 keeps for them, on a real
PostgreSQL: site_latest, the hourly rollup's live counts, the rejected counter."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.storage import metrics
from sitewatch.storage.checks import Rejected, store_batch
from sitewatch.storage.retention import prune_rollups, refresh_hourly
from sitewatch.storage.schema import SCHEMA_VERSION, migrate
from sitewatch.storage.slo import Tally
from tests.builders import observation
from tests.integration.test_retention import (
    DIRECT_HOURLY,
    apply,
    at_version,
    query,
    store_before,
    varied_checks,
)

NOW = datetime(2026, 6, 10, 12, 30, tzinfo=UTC)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
COUNTS = "SELECT site, hour, location, checks, ups FROM site_checks_hourly ORDER BY 1, 2, 3"


@pytest.fixture
def db(migrated_conn):
    return migrated_conn


def tls(obs, expires: datetime | None):
    return dataclasses.replace(obs, tls_expires_at=expires)


def rejected(offset: int) -> Rejected:
    return Rejected(b"{oops", None, "sitewatch.checks", 0, offset, "not JSON")


def test_latest_holds_each_location_s_newest_final_attempt(db):
    expiry = datetime(2026, 9, 1, tzinfo=UTC)
    store_batch(db, [
        tls(observation("shop", NOW - 10 * MINUTE, response_time_ms=120.0), expiry),
        observation("shop", NOW - 5 * MINUTE, up=False, final=False),  # retrying: not final
        observation("shop", NOW - 20 * MINUTE, location="east"),
        observation("blog", NOW - 20 * MINUTE, up=False, final=False),  # nothing final yet
    ])  # fmt: skip
    store_batch(db, [
        observation("shop", NOW - 30 * MINUTE, up=False),  # late, older: changes nothing
        observation("shop", NOW - 5 * MINUTE, up=False, attempt=2),  # the retry's end, no TLS seen
    ])  # fmt: skip
    rows = {(r.site, r.location): r for r in metrics.latest(db)}
    assert set(rows) == {("blog", "local"), ("shop", "east"), ("shop", "local")}
    shop = rows["shop", "local"]
    assert (shop.scheduled_at, shop.up) == (NOW - 5 * MINUTE, False)  # attempt 2
    assert shop.status_code == 503 and shop.error == "status"
    assert shop.stored == 4  # every attempt, the late one included
    assert (shop.tls_expires_at, shop.tls_seen_at) == (expiry, NOW - 10 * MINUTE)  # kept
    blog = rows["blog", "local"]
    assert blog.stored == 1 and blog.up is None and blog.scheduled_at is None
    assert rows["shop", "east"].up is True and rows["shop", "east"].stored == 1
    assert [r.location for r in metrics.latest(db, ["shop"])] == ["east", "local"]
    assert metrics.latest(db, []) == []


def test_a_redelivered_batch_is_not_counted_twice(db):
    batch = [observation("shop", NOW - k * MINUTE) for k in range(1, 6)]
    store_batch(db, batch)
    store_batch(db, batch + [observation("shop", NOW, up=False)])  # five duplicates and one new
    shop = metrics.latest(db, ["shop"])[0]
    assert shop.stored == 6 and shop.scheduled_at == NOW and shop.up is False
    assert query(db, COUNTS) == [
        ("shop", NOW.replace(minute=0), "local", 6, 5),
    ]
    assert metrics.pipeline(db).stored_total == 6


def test_hourly_counts_are_current_without_maintenance(db):
    rows = varied_checks(7, NOW - 30 * HOUR, hours=30, locations=("local", "east"))
    random.Random(8).shuffle(rows)
    for part in range(0, len(rows), 97):  # many batches, in no order, late rows and all
        store_batch(db, rows[part : part + 97])
    direct = [row[:5] for row in query(db, DIRECT_HOURLY)]
    assert query(db, COUNTS) == direct
    # maintenance adds the percentiles and leaves the counts as they are
    refresh_hourly(db, NOW)
    assert query(db, COUNTS) == direct
    assert query(db, "SELECT count(*) FROM site_checks_hourly WHERE max_ms IS NULL") == [(0,)]


def test_uptimes_over_24_hours_7_and_30_days(db):
    store_batch(db, [
        observation("shop", NOW - 10 * MINUTE),  # this hour: counted
        observation("shop", NOW - 23 * HOUR, up=False),
        observation("shop", NOW - 23 * HOUR, up=False, location="east"),
        observation("shop", NOW - 25 * HOUR),  # 24 h ago and more: 7 and 30 days only
        observation("shop", NOW - 5 * DAY, up=False),
        observation("shop", NOW - 20 * DAY),  # 30 days only
        observation("shop", NOW - 40 * DAY, up=False),  # in none
        observation("shop", NOW - 2 * HOUR, up=False, final=False),  # retried: not counted
        # left out
        dataclasses.replace(observation("shop", NOW - HOUR, up=False), maintenance=True),
        observation("old", NOW - 40 * DAY),
    ])  # fmt: skip
    got = metrics.uptimes(db, ["shop", "old", "none"], NOW)
    assert got == {
        "shop": {"24h": Tally(3, 1), "7d": Tally(5, 2), "30d": Tally(6, 3)},
    }
    with pytest.raises(ValueError, match="timezone"):
        metrics.uptimes(db, ["shop"], NOW.replace(tzinfo=None))
    assert metrics.uptimes(db, [], NOW) == {}


def test_pipeline_figures(db):
    empty = metrics.pipeline(db)
    assert empty == metrics.Pipeline(None, None, 0, 0)
    store_batch(
        db,
        [observation("shop", NOW - MINUTE), observation("blog", NOW - 3 * MINUTE)],
        [rejected(1)],
    )
    store_batch(db, [], [rejected(1), rejected(2), rejected(3)])  # offset 1 again: no new row
    figures = metrics.pipeline(db)
    assert figures.newest_checked_at == NOW - MINUTE
    assert figures.stored_total == 2 and figures.rejected_total == 3
    assert figures.newest_stored_at is not None


def test_latest_rows_of_sites_gone_for_the_rollup_retention_are_pruned(db):
    store_batch(db, [observation("shop", NOW)])
    db.execute("UPDATE site_latest SET stored_at = %s", (NOW - 800 * DAY,))
    db.commit()
    assert prune_rollups(db, NOW, 730) >= 1
    assert metrics.latest(db) == []


def test_migration_9_fills_the_tables_from_what_is_stored(pg_conn):
    at_version(pg_conn, 8)
    now = datetime.now(UTC).replace(microsecond=0)
    expiry = now + 30 * DAY
    store_batch(pg_conn, [], [rejected(1), rejected(2)])
    store_before(10, pg_conn, [
        tls(observation("shop", now - 3 * HOUR), expiry),
        observation("shop", now - 2 * HOUR, up=False),
        observation("shop", now - HOUR, up=False, final=False),  # not final: not the latest
        observation("shop", now - 2 * HOUR, location="east"),
        observation("gone", now - 40 * DAY),  # nothing in 30 days
    ])  # fmt: skip
    pg_conn.execute("DELETE FROM site_checks_hourly")  # as if maintenance never ran
    pg_conn.commit()
    apply(pg_conn, 9)
    assert migrate(pg_conn) == SCHEMA_VERSION
    rows = {(r.site, r.location): r for r in metrics.latest(pg_conn)}
    assert set(rows) == {("shop", "local"), ("shop", "east")}
    shop = rows["shop", "local"]
    assert (shop.scheduled_at, shop.up, shop.stored) == (now - 2 * HOUR, False, 0)
    assert (shop.tls_expires_at, shop.tls_seen_at) == (None, None)  # the latest saw none
    assert metrics.pipeline(pg_conn).rejected_total == 2
    direct = [row[:5] for row in query(pg_conn, DIRECT_HOURLY)]
    assert query(pg_conn, COUNTS) == direct
    # from here on the trigger keeps them
    store_batch(pg_conn, [observation("shop", now)], [rejected(3)])
    assert metrics.latest(pg_conn, ["shop"])[1].stored == 1
    assert metrics.pipeline(pg_conn).rejected_total == 3
