"""The drain against the real broker and database: exactly once, whatever breaks in between."""

import asyncio
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
from sitewatch.storage.schema import migrate

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def observations(n: int, site: str = "s") -> list[Observation]:
    return [
        Observation(
            site=f"{site}{i % 7}",
            url=f"https://example.com/{i}",
            checked_at=T0,
            up=i % 3 != 0,
            scheduled_at=T0 + timedelta(minutes=i),
            attempt=1 + i % 2,
            final=True,
            status_code=200,
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
def setup(new_topic, pg_conn):
    migrate(pg_conn)
    return new_topic(), pg_conn


def test_redelivered_observations_are_stored_once(setup):
    topic, conn = setup
    obs = observations(500)
    produce(topic, obs)
    produce(topic, obs)  # the same observations again, as a retrying producer might
    result = run_drain(topic, conn, batch_size=300)
    assert (result.messages, result.inserted, result.duplicates) == (1000, 500, 500)
    assert rows(conn) == expected_rows(obs)
    assert sum(committed(topic).values()) == 1000


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

    trigger = UndrainedMessageTrigger(
        topics=[topic], kafka_config_id="sitewatch_kafka", poll_timeout=0.5
    )
    trigger.LOOK_SECONDS = 2  # short looks, so a cancelled one ends quickly

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
