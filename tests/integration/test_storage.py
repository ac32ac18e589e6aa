"""sitewatch.storage against a real PostgreSQL: migrations, batch store, rejected messages."""

from __future__ import annotations

import dataclasses
import random
import string
import threading
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from sitewatch.errors import StorageError
from sitewatch.observation import FIELDS, Observation
from sitewatch.storage.checks import (
    Rejected,
    StoreResult,
    observation_rows,
    store_batch,
    store_rows,
)
from sitewatch.storage.schema import SCHEMA_VERSION, migrate, transaction
from tests import schemas
from tests.builders import observation

pytestmark = pytest.mark.services

T0 = datetime(2025, 3, 30, 0, 59, 59, 999_999, tzinfo=UTC)
NAMES = [f.name for f in FIELDS]
ODD_TEXT = 'tab\there\nnew line\r\\backslash \\N None "quoted" \n\\.\n ünïcødé ✓ 🐘 \x01\x1f'


def full(i: int = 0, **changes) -> Observation:
    """A fully populated observation; ``i`` makes its key unique."""
    obs = observation(
        f"site-{i % 7}",
        T0 + timedelta(minutes=i),
        url=f"https://example.com/{i}",
        checked_at=T0 + timedelta(seconds=i, microseconds=123_457),
        attempt=1 + i % 3,
        final=i % 3 == 2,
        status_code=200,
        response_time_ms=123.456789012345,
        dns_ms=0.1,
        connect_ms=1e-05,
        tls_ms=33.3,
        ttfb_ms=99.0,
        regex="ok|healthy",
        regex_matched=True,
        final_url=f"https://www.example.com/{i}",
        body_bytes=5_000_000_000,
        tls_expires_at=datetime(2026, 1, 1, 12, tzinfo=UTC),
        tls_version="TLSv1.3",
    )
    return dataclasses.replace(obs, **changes)


def sparse(i: int) -> Observation:
    """An observation with every optional field None (a connection error)."""
    return observation(
        "down",
        T0 + timedelta(minutes=i),
        up=False,
        url="http://10.255.255.1/",
        checked_at=T0,
        status_code=None,
        response_time_ms=None,
        error="connect_timeout",
        error_detail=None,
    )


def stored(
    conn, table: str = "site_checks", order: str = "site, scheduled_at, location, attempt"
) -> list:
    with conn.cursor() as cur:
        cols = ", ".join(NAMES) if table == "site_checks" else "*"
        cur.execute(f"SELECT {cols} FROM {table} ORDER BY {order}")
        rows = cur.fetchall()
    conn.commit()
    return rows


def as_observations(rows) -> list[Observation]:
    return [Observation(**dict(zip(NAMES, row, strict=True))) for row in rows]


def key(obs: Observation):
    return (obs.site, obs.scheduled_at, obs.location, obs.attempt)


@pytest.fixture
def db(migrated_conn):
    return migrated_conn


# --- migrate -------------------------------------------------------------------------------------


def test_migrate_creates_tables_and_indexes_in_the_current_schema(pg_conn, pg_schema):
    assert migrate(pg_conn) == SCHEMA_VERSION
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name !~ '^site_checks_p[0-9]{8}$'",  # daily partitions: test_retention
            (pg_schema,),
        )
        assert {r[0] for r in cur.fetchall()} == {
            "site_alert_state",
            "site_checks",
            "site_checks_daily",
            "site_checks_hourly",
            "site_checks_rejected",
            "site_latest",
            "sitewatch_counters",
            "site_verdicts",
            "site_mutes",
            "site_alert_log",
            "site_slo_alerts",
            "status_incidents",
            "status_incident_updates",
            "sitewatch_schema_version",
        }
        cur.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'site_checks' ORDER BY ordinal_position",
            (pg_schema,),
        )
        columns = {name: (kind, nullable) for name, kind, nullable in cur.fetchall()}
        cur.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY indexname",
            (pg_schema,),
        )
        indexes = [r[0] for r in cur.fetchall()]
    assert list(columns) == [
        # DESIGN.md's order, which is what SELECT * shows; migrations 6, 8, 10, 12 and 13 added
        # the last five
        *("site", "url", "scheduled_at", "attempt", "final", "checked_at", "up", "status_code"),
        *("response_time_ms", "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "regex"),
        *("regex_matched", "error", "error_detail", "final_url", "body_bytes", "tls_expires_at"),
        *("stored_at", "location", "maintenance", "run_id", "steps", "tls_version"),
    ]
    assert set(NAMES) <= set(columns)
    assert columns["scheduled_at"] == ("timestamp with time zone", "NO")
    assert columns["checked_at"] == ("timestamp with time zone", "NO")
    assert columns["tls_expires_at"] == ("timestamp with time zone", "YES")
    assert columns["attempt"] == ("integer", "NO")
    assert columns["response_time_ms"] == ("double precision", "YES")
    assert columns["body_bytes"] == ("bigint", "YES")
    assert columns["stored_at"] == ("timestamp with time zone", "NO")
    assert columns["location"] == ("text", "NO")
    assert columns["tls_version"] == ("text", "YES")
    assert any(
        "UNIQUE" in d and "site_checks USING btree (site, scheduled_at, location, attempt)" in d
        for d in indexes
    )
    assert any(
        "UNIQUE" in d and 'site_checks_rejected USING btree (topic, partition, "offset")' in d
        for d in indexes
    )


def test_migrate_twice_applies_nothing_the_second_time(pg_conn):
    assert migrate(pg_conn) == SCHEMA_VERSION
    before = stored(pg_conn, "sitewatch_schema_version", "version")
    assert migrate(pg_conn) == SCHEMA_VERSION
    assert stored(pg_conn, "sitewatch_schema_version", "version") == before
    assert [row[0] for row in before] == list(range(1, SCHEMA_VERSION + 1))


def test_a_cloned_schema_is_what_migrate_makes(pg_dsn, pg_conn, pg_schema):
    """tests/schemas.clone, behind the migrated_schema fixture, stands in for migrate."""
    assert migrate(pg_conn) == SCHEMA_VERSION
    copy = schemas.create(pg_dsn)
    try:
        schemas.clone(pg_dsn, copy)

        def definitions(schema):  # tables, functions, triggers, privileges; \restrict is psql's
            text = schemas.dump(pg_dsn, schema, data=False).replace(schema, "<schema>")
            # sorted: the GRANTs on one table come out in the order of its ACL's items, which
            # follows the order the grants were made in, not what they grant
            return sorted(line for line in text.splitlines() if not line.startswith("\\"))

        assert definitions(copy) == definitions(pg_schema)
        with psycopg.connect(pg_dsn, options=f"-c search_path={copy}") as conn:
            assert migrate(conn) == SCHEMA_VERSION
            for rows in (
                "SELECT version FROM sitewatch_schema_version ORDER BY 1",
                "SELECT name, value FROM sitewatch_counters ORDER BY 1",
            ):
                assert conn.execute(rows).fetchall() == pg_conn.execute(rows).fetchall()
    finally:
        schemas.drop(pg_dsn, copy)


def test_concurrent_migrations_both_succeed_and_apply_once(pg_connect):
    conns = [pg_connect(), pg_connect()]
    start = threading.Barrier(len(conns))
    results, errors = [], []

    def run(conn):
        start.wait()
        try:
            results.append(migrate(conn))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == [SCHEMA_VERSION, SCHEMA_VERSION]
    assert len(stored(conns[0], "sitewatch_schema_version", "version")) == SCHEMA_VERSION


def test_migrate_on_a_closed_connection_raises_storage_error(pg_conn):
    pg_conn.close()
    with pytest.raises(StorageError, match="^PostgreSQL could not migrate"):
        migrate(pg_conn)


# --- store_batch: observations -----------------------------------------------------------------


def test_stored_rows_match_the_observations_field_by_field(db):
    batch = [
        full(1),
        full(2, error="status", error_detail=ODD_TEXT, up=False, regex_matched=False),
        full(3, regex="None", final_url="", url="https://example.com/\\path\t"),
        # the same instant written with another UTC offset
        full(4, scheduled_at=T0.astimezone(timezone(timedelta(hours=-7)))),
        sparse(5),
    ]
    assert store_batch(db, batch) == StoreResult(inserted=5, duplicates=0, rejected=0)

    got = {key(o): o for o in as_observations(stored(db))}
    assert len(got) == len(batch)
    for want in batch:
        row = got[key(want)]
        for name in NAMES:
            value, expected = getattr(row, name), getattr(want, name)
            assert value == expected, name
            assert type(value) is type(expected), name
            if isinstance(value, datetime):
                assert value.utcoffset() is not None, name
    assert got[key(batch[1])].error_detail == ODD_TEXT
    assert got[key(batch[2])].regex == "None"  # the text, not NULL
    assert got[key(batch[2])].final_url == ""  # empty, not NULL
    assert got[key(batch[4])].status_code is None


def test_timestamps_are_stored_as_utc_instants_whatever_the_session_time_zone(db):
    with db.cursor() as cur:
        cur.execute("SET TIME ZONE 'America/New_York'")
    db.commit()
    plus_two = timezone(timedelta(hours=2))
    obs = full(0, checked_at=datetime(2025, 6, 1, 16, 0, 0, 1, tzinfo=plus_two))
    store_batch(db, [obs])
    with db.cursor() as cur:
        cur.execute(
            "SELECT to_char(checked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') "
            "FROM site_checks"
        )
        assert cur.fetchone() == ("2025-06-01 14:00:00.000001",)


def test_redelivered_batch_makes_no_second_row(db):
    batch = [full(i) for i in range(20)]
    assert store_batch(db, batch) == StoreResult(20, 0, 0)
    assert store_batch(db, batch) == StoreResult(0, 20, 0)
    assert len(stored(db)) == 20


def test_two_locations_of_one_attempt_are_two_rows_and_each_is_stored_once(db):
    east, west = full(0, location="east"), full(0, location="west", up=False)
    assert store_batch(db, [east, west]) == StoreResult(2, 0, 0)  # the COPY path
    assert store_batch(db, [west, east, full(1, location="east")]) == StoreResult(1, 2, 0)
    assert store_batch(db, [east, west, west]) == StoreResult(0, 3, 0)  # the staging path
    assert [(o.location, o.up) for o in as_observations(stored(db))] == [
        ("east", True),
        ("west", False),
        ("east", True),
    ]


def test_a_location_sent_by_no_producer_is_the_column_default(db):
    # A drain of the previous version copies no location: the row is the local location's.
    schemas.store_as_old_drain(db, T0)
    assert [(o.site, o.location) for o in as_observations(stored(db))] == [("old", "local")]
    # ...and the same attempt stored again by the new drain is a duplicate of it
    obs = full(0, site="old", scheduled_at=T0, attempt=1)
    assert store_batch(db, [obs]) == StoreResult(0, 1, 0)


def test_a_check_from_a_drain_before_migration_13_has_no_tls_version(db):
    # A drain of the previous version copies no tls_version: the row reads None, as its message
    # would have (the field is optional), and the new drain's checks keep theirs.
    schemas.store_as_old_drain(db, T0)
    store_batch(db, [full(1, site="new")])
    versions = {o.site: o.tls_version for o in as_observations(stored(db))}
    assert versions == {"old": None, "new": "TLSv1.3"}


def test_duplicates_within_one_batch_are_counted_once(db):
    store_batch(db, [full(0)])
    batch = [full(0), full(1), full(1), full(2), full(1)]
    assert store_batch(db, batch) == StoreResult(inserted=2, duplicates=3, rejected=0)
    assert sorted(key(o) for o in as_observations(stored(db))) == sorted(
        key(full(i)) for i in range(3)
    )


def test_large_batch_spanning_several_copy_chunks(db):
    batch = [full(i) for i in range(3500)] + [full(5), full(3499)]
    assert store_batch(db, batch) == StoreResult(3500, 2, 0)
    rows = as_observations(stored(db))
    assert len(rows) == 3500
    assert {key(o): o for o in rows}[key(full(3499))] == full(3499)


def test_text_postgresql_cannot_hold_is_replaced_not_fatal(db):
    store_batch(db, [full(0, error_detail="nul\x00byte", regex="lone \udcff surrogate")])
    (row,) = as_observations(stored(db))
    assert row.error_detail == "nul\ufffdbyte"
    assert row.regex == "lone ? surrogate"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scheduled_at": None}, "scheduled_at is None"),
        ({"checked_at": datetime(2025, 1, 1)}, "checked_at must be timezone-aware"),
        ({"tls_expires_at": datetime(2025, 1, 1)}, "tls_expires_at must be timezone-aware"),
        # binary COPY would silently wrap it around
        ({"status_code": 2**31}, "status_code out of range for its column: 2147483648"),
    ],
)
def test_invalid_observation_raises_value_error_and_stores_nothing(db, change, message):
    with pytest.raises(ValueError, match=message):
        store_batch(db, [full(0), full(1, **change)])
    assert stored(db) == []


def test_empty_batch_is_a_no_op(db):
    assert store_batch(db, []) == StoreResult(0, 0, 0)


def test_autocommit_connection_is_stored_atomically_and_restored(db):
    db.autocommit = True
    assert store_batch(db, [full(0)]) == StoreResult(1, 0, 0)
    assert db.autocommit is True
    assert len(stored(db)) == 1


# --- store_batch: rejected messages ------------------------------------------------------------


def test_rejected_messages_keep_their_raw_bytes_and_are_deduplicated(db):
    junk = bytes(range(256)) + b"\x00\x00\\.\n"
    batch = [
        Rejected(
            raw=junk,
            key=b"\xff\x00k",
            topic="sitewatch.checks",
            partition=0,
            offset=7,
            reason="not UTF-8 JSON",
        ),
        Rejected(
            raw=None,
            key=None,
            topic="sitewatch.checks",
            partition=1,
            offset=7,
            reason="empty message (null value)",
        ),
        Rejected(
            raw=junk,
            key=b"\xff\x00k",
            topic="sitewatch.checks",
            partition=0,
            offset=7,
            reason="not UTF-8 JSON",
        ),
    ]
    assert store_batch(db, [full(0)], batch) == StoreResult(1, 0, rejected=2)
    assert store_batch(db, [], batch[:1]) == StoreResult(0, 0, rejected=0)

    with db.cursor() as cur:
        cur.execute(
            'SELECT topic, partition, "offset", key, raw, reason, rejected_at IS NOT NULL'
            " FROM site_checks_rejected ORDER BY partition"
        )
        rows = [
            (t, p, o, k and bytes(k), r and bytes(r), why, at)
            for t, p, o, k, r, why, at in cur.fetchall()
        ]
    assert rows == [
        ("sitewatch.checks", 0, 7, b"\xff\x00k", junk, "not UTF-8 JSON", True),
        ("sitewatch.checks", 1, 7, None, None, "empty message (null value)", True),
    ]


# --- store_batch: failures ---------------------------------------------------------------------


def test_failure_after_the_copy_rolls_back_the_whole_batch(db):
    # The rejected insert runs after the observations were copied and inserted; make it fail.
    with db.cursor() as cur:
        cur.execute("ALTER TABLE site_checks_rejected ADD CHECK (reason <> 'boom')")
    db.commit()
    boom = Rejected(raw=b"x", key=None, topic="t", partition=0, offset=1, reason="boom")
    fine = Rejected(raw=b"y", key=None, topic="t", partition=0, offset=2, reason="ok")

    with pytest.raises(StorageError, match=r"^PostgreSQL could not store .*check constraint") as e:
        store_batch(db, [full(i) for i in range(10)], [fine, boom])
    assert isinstance(e.value.__cause__, psycopg.Error)
    assert stored(db) == []
    assert stored(db, "site_checks_rejected", "id") == []
    # the connection is usable again and the same batch can be retried
    assert store_batch(db, [full(i) for i in range(10)], [fine]) == StoreResult(10, 0, 1)


def test_failure_at_commit_rolls_back_the_whole_batch(db):
    # A deferred constraint trigger fires at COMMIT, after every statement of the batch succeeded.
    with db.cursor() as cur:
        cur.execute(
            """
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
            CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON site_checks
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();
            """
        )
    db.commit()
    rejected = [Rejected(raw=b"x", key=None, topic="t", partition=0, offset=1, reason="r")]
    with pytest.raises(StorageError, match="^PostgreSQL .*refused at commit"):
        store_batch(db, [full(0)], rejected)
    assert stored(db) == []
    assert stored(db, "site_checks_rejected", "id") == []


def test_rows_postgresql_refuses_are_refused_alone_and_the_rest_is_stored(db):
    # A name of 4096 random characters overflows the primary key's btree entry. Decoding now
    # refuses such a name, but whatever else a row does to PostgreSQL must cost only that row.
    chars = string.ascii_letters + string.punctuation
    huge = ["".join(random.Random(i).choices(chars, k=4096)) for i in range(2)]
    observations = [full(i) for i in range(50)]
    observations[7:7] = [full(100, site=huge[0])]
    observations[40:40] = [full(101, site=huge[1])]
    rows = observation_rows(observations)

    def refuse(position: int, reason: str) -> Rejected:
        return Rejected(rows[position][0].encode(), None, "t", 0, position, reason)

    with pytest.raises(StorageError, match="index row size"):  # without refuse: the batch fails
        store_rows(db, rows)
    assert stored(db) == []

    assert store_rows(db, iter(rows), refuse=refuse) == StoreResult(50, 0, 2)
    assert len(stored(db)) == 50
    refused = stored(db, "site_checks_rejected", '"offset"')
    assert [(r[3], bytes(r[5])) for r in refused] == [(7, huge[0].encode()), (40, huge[1].encode())]
    for r in refused:
        assert r[6].startswith("PostgreSQL refused the row (54000): index row size")
    # redelivered: the refused rows are refused again, and nothing is stored twice
    assert store_rows(db, rows, refuse=refuse) == StoreResult(0, 50, 0)


def test_closed_connection_raises_storage_error(db):
    db.close()
    with pytest.raises(StorageError, match="^PostgreSQL could not store 1 observations") as e:
        store_batch(db, [full(0)])
    # psycopg 3 reports a connection closed on the client side as an OperationalError.
    assert isinstance(e.value.__cause__, psycopg.OperationalError)
    assert "closed" in str(e.value)


def terminate(killer, conn) -> None:
    """End ``conn``'s server process from ``killer`` and wait until it is gone."""
    pid = conn.info.backend_pid
    killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    killer.commit()
    for _ in range(500):
        gone = killer.execute(
            "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)", (pid,)
        )
        if gone.fetchone()[0]:
            killer.commit()
            return
        killer.commit()
        threading.Event().wait(0.01)
    raise AssertionError(f"backend {pid} still there after 5 s")


def test_server_side_disconnect_raises_storage_error_and_stores_nothing(db, pg_connect):
    killer = pg_connect()
    terminate(killer, db)

    with pytest.raises(StorageError, match="^PostgreSQL could not store") as e:
        store_batch(db, [full(0)])
    assert isinstance(e.value.__cause__, psycopg.OperationalError)
    assert db.closed
    assert stored(killer) == []


@pytest.mark.timeout(30)
def test_a_connection_left_in_a_command_by_an_error_is_closed(db):
    # What a server gone mid-COPY can leave (seen once in CI): psycopg's connection still open,
    # stuck in the COPY. Put it in one at the protocol level, then fail the transaction.
    db.pgconn.send_query(b"COPY site_checks_rejected (topic) FROM STDIN")
    assert db.info.transaction_status == TransactionStatus.ACTIVE
    with pytest.raises(StorageError, match="went away"), transaction(db, "could not go on") as cur:
        assert cur is not None
        raise psycopg.OperationalError("the server went away")
    assert db.closed


def test_the_server_gone_in_the_middle_of_a_copy_leaves_the_connection_closed(db, pg_connect):
    # psycopg stays in the COPY when the server goes mid-stream: the connection must be closed
    # for the caller to reconnect, not left open and stuck.
    killer = pg_connect()
    rows = list(observation_rows([full(i) for i in range(20_000)]))

    def streamed():
        yield from rows[:5_000]
        terminate(killer, db)
        yield from rows[5_000:]

    with pytest.raises(StorageError, match="^PostgreSQL could not store"):
        store_rows(db, streamed())
    assert db.closed
    assert stored(killer) == []
