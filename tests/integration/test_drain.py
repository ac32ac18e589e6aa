"""The drain against the real broker and database: exactly once, whatever breaks in between."""

import asyncio
import dataclasses
import json
import random
import string
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook
from sitewatch.airflow.sensor import UndrainedMessageTrigger
from sitewatch.errors import ConsumeError, StorageError
from sitewatch.names import DRAIN_GROUP
from sitewatch.observation import Observation
from sitewatch.pipeline.drain import drain
from sitewatch.storage.partitions import MAX_NEW_PARTITIONS
from sitewatch.storage.retention import RETENTION_VAR
from tests.builders import observation

# Recent, so that every check lies in the window the drain stores (see test_the_window_...).
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


def observations(n: int, site: str = "s") -> list[Observation]:
    return [
        observation(
            f"{site}{i % 7}",
            T0 + timedelta(minutes=i),
            up=i % 3 != 0,
            attempt=1 + i % 2,
            response_time_ms=12.5 + i,
        )
        for i in range(n)
    ]


def produce(topic: str, values) -> None:
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    for value in values:
        raw = value.to_message() if isinstance(value, Observation) else value
        key = value.site.encode() if isinstance(value, Observation) else b"junk"
        producer.produce(topic, key=key, value=raw)
    assert producer.flush(30) == 0


def consumer(topic: str):
    return GroupConsumerHook([topic], DRAIN_GROUP).get_consumer()


def committed(topic: str) -> dict[int, int]:
    """The drain group's committed offsets on ``topic`` by partition (-1001 = none)."""
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    admin = KafkaBaseHook(kafka_config_id="sitewatch_kafka").get_conn
    request = ConsumerGroupTopicPartitions(
        DRAIN_GROUP, [TopicPartition(topic, p) for p in range(3)]
    )
    result = admin.list_consumer_group_offsets([request])[DRAIN_GROUP].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def run_drain(topic, conn, **kwargs):
    c = consumer(topic)
    try:
        return drain(c, conn, poll_timeout=3.0, **kwargs)
    finally:
        c.close()


def rows(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT site, scheduled_at, attempt, up, response_time_ms FROM site_checks "
            "ORDER BY site, scheduled_at, attempt"
        )
        found = cur.fetchall()
    conn.commit()
    return found


def expected_rows(obs) -> list[tuple]:
    return sorted((o.site, o.scheduled_at, o.attempt, o.up, o.response_time_ms) for o in obs)


@pytest.fixture
def setup(new_topic, migrated_conn):
    return new_topic(), migrated_conn


def test_redelivered_observations_are_stored_once(setup):
    topic, conn = setup
    obs = observations(500)
    produce(topic, obs)
    produce(topic, obs)  # the same observations again, as a retrying producer might
    result = run_drain(topic, conn, batch_size=300)
    assert (result.messages, result.inserted, result.duplicates) == (1000, 500, 500)
    assert rows(conn) == expected_rows(obs)
    assert sum(committed(topic).values()) == 1000


def test_each_location_is_a_row_and_a_message_without_one_is_local(setup):
    """Producers of the previous version send no location; during an upgrade their messages
    are stored as the local location's. Another location's checks of the same runs and attempts
    are rows of their own, each stored once however often it is delivered."""
    topic, conn = setup
    checks = observations(6)
    east = [dataclasses.replace(o, location="east") for o in checks]
    before_locations = []
    for o in checks:
        doc = json.loads(o.to_message())
        del doc["location"]
        before_locations.append(json.dumps(doc).encode())
    produce(topic, [*before_locations, *east, *east])
    result = run_drain(topic, conn)
    assert (result.messages, result.inserted, result.duplicates, result.rejected) == (18, 12, 6, 0)
    with conn.cursor() as cur:
        cur.execute("SELECT location, count(*) FROM site_checks GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [("east", 6), ("local", 6)]
    conn.commit()


def test_a_drain_with_idle_seconds_waits_out_a_gap_between_bursts(setup):
    """Checks come in bursts; a drain that ended at the first empty read would leave the second
    burst for the next run. With idle_seconds it keeps reading through the gap."""
    topic, conn = setup
    first, second = observations(40)[:20], observations(40)[20:]
    produce(topic, first)
    c = consumer(topic)
    try:
        late = threading.Timer(3.0, produce, (topic, second))  # after an empty 1 s read
        late.start()
        result = drain(c, conn, poll_timeout=1.0, idle_seconds=8.0)
        late.join()
    finally:
        c.close()
    assert (result.messages, result.inserted) == (40, 40)
    assert result.batches >= 2
    assert rows(conn) == expected_rows(first + second)

    produce(topic, observations(45)[40:])
    again = run_drain(topic, conn, idle_seconds=0.0)  # the default: stop at the first empty read
    assert (again.messages, again.inserted) == (5, 5)


def test_a_drain_told_to_stop_ends_after_the_batch_in_hand_is_stored_and_committed(setup):
    """The drain task's SIGTERM: the batch being read is stored and its offsets committed, the
    rest is left for the next drain, and the drain says why it ended."""
    topic, conn = setup
    obs = observations(30)
    produce(topic, obs)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # told after the first batch

    result = run_drain(topic, conn, batch_size=10, idle_seconds=60.0, stop=stop)
    assert (result.ended, result.messages, result.inserted) == ("stopped", 10, 10)
    assert sum(o for o in committed(topic).values() if o >= 0) == 10  # -1001: none yet
    assert len(rows(conn)) == 10
    rest = run_drain(topic, conn)
    assert (rest.ended, rest.messages, rest.inserted) == ("quiet", 20, 20)
    assert rows(conn) == expected_rows(obs)


def test_crash_between_database_commit_and_offset_commit(setup):
    topic, conn = setup
    obs = observations(200)
    produce(topic, obs)

    class Crash(Exception):
        pass

    c = consumer(topic)

    class CrashingConsumer:
        def consume(self, *args):
            return c.consume(*args)

        def commit(self, *args, **kwargs):
            raise Crash("worker died after the database commit")

    with pytest.raises(Crash):
        drain(CrashingConsumer(), conn, batch_size=50, poll_timeout=3.0)
    c.close()
    assert len(rows(conn)) == 50  # the first batch reached the database ...
    assert all(offset < 0 for offset in committed(topic).values())  # ... but no offset moved

    result = run_drain(topic, conn, batch_size=50)
    assert (result.inserted, result.duplicates) == (150, 50)
    assert rows(conn) == expected_rows(obs)


def test_a_broker_error_mid_batch_stores_nothing_of_the_batch(setup):
    """Rows stream into the COPY as they are decoded; an error met halfway through a batch must
    still undo the whole batch and leave its offsets uncommitted."""
    topic, conn = setup
    obs = observations(100)
    produce(topic, obs)
    c = consumer(topic)

    class BrokerError:  # what confluent_kafka hands over for a failed fetch
        def error(self):
            return KafkaError(KafkaError._TRANSPORT, "broker went away")

        def topic(self):
            return topic

    class FailingConsumer:
        def consume(self, num, timeout):
            messages = c.consume(num, timeout)
            return messages[:60] + [BrokerError()] + messages[60:]

        def commit(self, *args, **kwargs):
            return c.commit(*args, **kwargs)

    with pytest.raises(ConsumeError, match=f"reading {topic} failed: .*broker went away"):
        drain(FailingConsumer(), conn, batch_size=100, poll_timeout=3.0)
    c.close()
    assert rows(conn) == []
    assert all(offset < 0 for offset in committed(topic).values())

    result = run_drain(topic, conn, batch_size=100)
    assert (result.inserted, result.duplicates) == (100, 0)
    assert rows(conn) == expected_rows(obs)


def test_malformed_messages_are_rejected_and_the_drain_goes_on(setup):
    topic, conn = setup
    good = observations(20)
    bad = [
        b"not json",
        b"\x00\xff\xfe binary",
        b'{"v": 2}',
        b"[1, 2]",
        b'{"v": 1, "site": "x"}',
        b"x" * 300_000,
    ]
    produce(topic, good[:10] + bad + good[10:])
    result = run_drain(topic, conn)
    assert (result.inserted, result.rejected) == (20, len(bad))
    assert rows(conn) == expected_rows(good)
    with conn.cursor() as cur:
        cur.execute('SELECT raw, reason, topic, partition, "offset" FROM site_checks_rejected')
        stored = cur.fetchall()
    assert sorted(bytes(r[0]) for r in stored) == sorted(bad)
    reasons = {bytes(r[0]): r[1] for r in stored}
    assert reasons[b'{"v": 2}'].startswith("unsupported version")
    assert reasons[b'{"v": 1, "site": "x"}'].startswith("missing field")
    assert all(r[2] == topic and r[3] >= 0 and r[4] >= 0 for r in stored)

    # a rerun over the same messages (offsets reset) stores no second copy of anything
    result = run_drain_from_start(topic, conn)
    assert (result.inserted, result.rejected) == (0, 0)


def run_drain_from_start(topic, conn):
    group = f"replay-{uuid.uuid4().hex}"
    c = GroupConsumerHook([topic], group).get_consumer()
    try:
        return drain(c, conn, poll_timeout=3.0)
    finally:
        c.close()


def test_database_lost_mid_drain_keeps_offsets_and_loses_nothing(setup, pg_connect):
    topic, conn = setup
    obs = observations(300)
    produce(topic, obs)
    killer = pg_connect()
    killer.autocommit = True

    class DiesAfterFirstBatch:
        """Consumer wrapper: after the first offset commit, the database connection is killed."""

        def __init__(self, inner):
            self.inner, self.commits = inner, 0

        def consume(self, *args):
            return self.inner.consume(*args)

        def commit(self, *args, **kwargs):
            self.inner.commit(*args, **kwargs)
            self.commits += 1
            with killer.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

    c = consumer(topic)
    with pytest.raises(StorageError, match="PostgreSQL"):
        drain(DiesAfterFirstBatch(c), conn, batch_size=100, poll_timeout=3.0)
    c.close()
    assert sum(o for o in committed(topic).values() if o > 0) == 100

    fresh = pg_connect()
    result = run_drain(topic, fresh, batch_size=100)
    assert result.inserted == 200
    assert rows(fresh) == expected_rows(obs)


def test_sensor_waits_fires_on_new_message_and_never_moves_drain_offsets(setup):
    topic, conn = setup
    produce(topic, observations(5))
    run_drain(topic, conn)
    before = committed(topic)
    assert sum(before.values()) == 5

    # short looks, so a cancelled one ends quickly
    trigger = UndrainedMessageTrigger(
        topics=[topic], kafka_config_id="sitewatch_kafka", look_seconds=2
    )

    async def first_event(timeout):
        gen = trigger.run()
        try:
            return await asyncio.wait_for(gen.__anext__(), timeout)
        finally:
            await gen.aclose()
            await trigger.cleanup()

    with pytest.raises(TimeoutError):  # caught up: nothing to fire on
        asyncio.run(first_event(6))

    extra = observations(1, site="late")
    produce(topic, extra)
    event = asyncio.run(first_event(30))
    assert event.payload["topic"] == topic
    assert committed(topic) == before  # the sensor's read moved nothing
    assert run_drain(topic, conn).inserted == 1


def rejections(conn) -> dict[bytes, str]:
    """``site_checks_rejected`` as {raw bytes: reason}."""
    with conn.cursor() as cur:
        cur.execute("SELECT raw, reason FROM site_checks_rejected")
        found = {bytes(raw): reason for raw, reason in cur.fetchall()}
    conn.commit()
    return found


def execute(conn, sql: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.commit()


def test_a_site_name_no_sites_file_allows_is_rejected_and_the_drain_goes_on(setup):
    # 4096 random characters passed decoding, then overflowed the primary key's btree entry
    # ("index row size ... exceeds"): the batch failed on every retry and nothing was stored.
    topic, conn = setup
    good = observations(20)
    name = "".join(random.Random(3).choices(string.ascii_letters + string.punctuation, k=4096))
    bad = observations(1)[0]
    bad.site = name
    produce(topic, good[:10] + [bad.to_message()] + good[10:])
    result = run_drain(topic, conn)
    assert (result.inserted, result.rejected) == (20, 1)
    assert rows(conn) == expected_rows(good)
    [reason] = rejections(conn).values()
    assert reason.startswith(f"site: invalid name {name[:64]!r}: use at most 63 of a-z")
    assert sum(committed(topic).values()) == 21


def long_url(i: int) -> str:
    # random, so that compression cannot bring the index entry under btree's 2704-byte limit
    return "https://example.com/" + "".join(random.Random(i).choices(string.ascii_letters, k=4000))


def test_rows_postgresql_refuses_are_isolated_and_the_rest_of_the_batch_is_stored(setup):
    """Whatever a row does to PostgreSQL, it is rejected alone: here an index an operator added
    on url cannot hold a 4 KiB random URL, which decoding rightly accepts."""
    topic, conn = setup
    execute(conn, "CREATE INDEX site_checks_url ON site_checks (url)")
    good = observations(300)
    poison = observations(3, site="poison")
    for i, obs in enumerate(poison):
        obs.url = long_url(i)
    produce(topic, good[:100] + poison[:1] + good[100:200] + poison[1:] + good[200:])
    result = run_drain(topic, conn, batch_size=1000)
    assert (result.messages, result.inserted, result.rejected) == (303, 300, 3)
    assert rows(conn) == expected_rows(good)
    reasons = rejections(conn)
    assert sorted(reasons) == sorted(o.to_message() for o in poison)  # raw bytes kept
    for reason in reasons.values():
        assert reason.startswith("PostgreSQL refused the row (54000): index row size")
    assert sum(committed(topic).values()) == 303

    # A replay bisects again (the refused rows among redelivered ones) and stores nothing twice.
    replay = run_drain_from_start(topic, conn)
    assert (replay.inserted, replay.duplicates, replay.rejected) == (0, 300, 0)
    assert rows(conn) == expected_rows(good) and len(rejections(conn)) == 3


def test_a_database_failure_is_not_taken_for_a_bad_row(setup):
    """An error that says the database is unwell (here: disk full, raised by a trigger for one
    site) fails the batch with nothing stored and no offset moved, as a lost connection does."""
    topic, conn = setup
    execute(
        conn,
        """
        CREATE FUNCTION unwell() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.site = 'unwell0' THEN
                RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER unwell BEFORE INSERT ON site_checks
        FOR EACH ROW EXECUTE FUNCTION unwell();
        """,
    )
    obs = observations(50) + observations(1, site="unwell")
    produce(topic, obs)
    with pytest.raises(StorageError, match="could not extend file"):
        run_drain(topic, conn, batch_size=100)
    assert rows(conn) == [] and rejections(conn) == {}
    assert all(offset < 0 for offset in committed(topic).values())

    execute(conn, "DROP TRIGGER unwell ON site_checks")  # the disk is fixed
    result = run_drain(topic, conn, batch_size=100)
    assert (result.inserted, result.rejected) == (51, 0)


def test_the_window_rejects_checks_retention_would_drop_or_from_the_future(setup, monkeypatch):
    topic, conn = setup
    now = datetime.now(UTC)
    base = observations(1)[0]

    def at(when: datetime | str) -> bytes:
        doc = json.loads(base.to_message())
        doc["scheduled_at"] = when if isinstance(when, str) else when.isoformat()
        return json.dumps(doc).encode()

    stored = [at(now - timedelta(days=9)), at(now + timedelta(hours=12))]
    too_old = [at("0001-01-01T00:00:00+00:00"), at(now - timedelta(days=11))]
    ahead = [at("9999-12-31T23:59:59+00:00"), at(now + timedelta(days=2))]
    produce(topic, stored + too_old + ahead)
    monkeypatch.setenv(RETENTION_VAR, "10")  # read as the maintenance DAG reads it
    result = run_drain(topic, conn)
    assert (result.inserted, result.rejected) == (2, 4)
    reasons = rejections(conn)
    for raw in too_old:
        assert reasons[raw].endswith(f"is older than the retention of 10 days ({RETENTION_VAR})")
    for raw in ahead:
        assert "is more than a day ahead of the drain's clock" in reasons[raw]
    assert reasons[too_old[0]].startswith("scheduled_at 0001-01-01T00:00:00+00:00 is older")


def partitions(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'site_checks'::regclass")
        (count,) = cur.fetchone()
    conn.commit()
    return count


def test_a_batch_makes_at_most_max_new_partitions(setup):
    """A batch spread over many days without a partition makes the partitions of the
    ``MAX_NEW_PARTITIONS`` days with the most rows (the latest first among equals); the rows of
    the other days are rejected, saying why, and the batch goes on."""
    topic, conn = setup
    days = MAX_NEW_PARTITIONS + 9
    obs = [observations(1, site="spread")[0] for _ in range(days)]
    start = (datetime.now(UTC) - timedelta(days=days + 10)).replace(hour=12, minute=0)
    for i, o in enumerate(obs):
        o.scheduled_at = start + timedelta(days=i)  # none has a partition yet
    obs.append(observations(1, site="spread")[0])
    obs[-1].scheduled_at = datetime.now(UTC) - timedelta(minutes=1)  # today's: made by migrate
    before = partitions(conn)
    produce(topic, obs)  # one key, so one partition: one batch
    result = run_drain(topic, conn, retention_days=90)
    assert (result.batches, result.inserted, result.rejected) == (1, MAX_NEW_PARTITIONS + 1, 9)
    assert partitions(conn) - before == MAX_NEW_PARTITIONS
    reasons = rejections(conn)
    assert sorted(reasons) == sorted(o.to_message() for o in obs[:9])  # the oldest days
    for o in obs[:9]:
        day = o.scheduled_at.date()
        assert reasons[o.to_message()] == (
            f"scheduled_at: no partition for {day} and this batch already made "
            f"{MAX_NEW_PARTITIONS}, the most one batch may make (the maintenance DAG makes them"
            " ahead)"
        )
