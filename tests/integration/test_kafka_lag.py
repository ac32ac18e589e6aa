"""The drain group's consumer lag, read from the real broker the way the metrics endpoint reads it.

Every test produces to partitions of its own choosing on a fresh topic, so each partition's lag
is known exactly; groups are fresh too, except where the wiring to the drain's own group is
the point (on a fresh topic, where that group has committed nothing before).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook, drain_lag_reader
from sitewatch.names import DRAIN_GROUP
from sitewatch.pipeline.lag import KafkaLag, LagReader
from tests.conftest import free_ports

pytestmark = pytest.mark.services

READ_SECONDS = 10.0


def admin():
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    return KafkaBaseHook(kafka_config_id="sitewatch_kafka").get_conn


def produce(topic: str, counts: dict[int, int]) -> None:
    """``counts[p]`` messages to partition ``p`` of ``topic``, confirmed."""
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(topic, value=f"m{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def commit(topic: str, group: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (``{partition: offset}``) for ``group`` from a consumer that assigns."""
    consumer = GroupConsumerHook([topic], group).get_conn
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def committed(topic: str, group: str) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])
    client = admin()  # kept referenced: a collected client never completes its futures
    answer = client.list_consumer_group_offsets([request])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in answer.topic_partitions}


def members(group: str) -> list[str]:
    """The member ids of ``group`` now (none for a group nobody joined)."""
    client = admin()  # kept referenced: a collected client never completes its futures
    described = client.describe_consumer_groups([group])[group].result(timeout=30)
    return [m.member_id for m in described.members]


class Counting:
    """A ``make_consumer`` for LagReader (the drain's consumer, unsubscribed) that counts calls."""

    def __init__(self, topic: str, group: str):
        self.topic, self.group, self.calls = topic, group, 0

    def __call__(self):
        self.calls += 1
        return GroupConsumerHook([self.topic], self.group).get_conn


def reader_for(topic: str, group: str | None = None) -> tuple[LagReader, Counting]:
    make = Counting(topic, group or f"lag-{uuid.uuid4().hex}")
    return LagReader(make, topic, make.group), make


@pytest.fixture
def closing():
    """Close every reader handed to it after the test."""
    readers: list[LagReader] = []
    yield readers.append
    for reader in readers:
        reader.close()


def test_each_partition_lags_by_its_end_less_the_groups_committed_offset(new_topic, closing):
    topic = new_topic()
    reader, _ = reader_for(topic)
    closing(reader)
    produce(topic, {0: 5, 1: 3, 2: 4})
    commit(topic, reader.group, {0: 2, 1: 3})

    lag = reader.read(READ_SECONDS)

    # partition 2: nothing committed, so every message there is still to read
    assert lag == KafkaLag(topic, reader.group, {0: 3, 1: 0, 2: 4})


def test_a_group_that_committed_nothing_lags_by_every_message_and_more_after_more(
    new_topic, closing
):
    topic = new_topic()
    reader, make = reader_for(topic)
    closing(reader)
    assert reader.read(READ_SECONDS).partitions == {0: 0, 1: 0, 2: 0}

    produce(topic, {0: 2, 1: 2, 2: 2})
    assert reader.read(READ_SECONDS).partitions == {0: 2, 1: 2, 2: 2}
    produce(topic, {1: 3})
    assert reader.read(READ_SECONDS).partitions == {0: 2, 1: 5, 2: 2}

    assert make.calls == 1  # one consumer kept between reads


def test_messages_retention_deleted_are_not_counted(new_topic, closing):
    topic = new_topic()
    reader, _ = reader_for(topic)
    closing(reader)
    produce(topic, {0: 5, 1: 5})
    client = admin()  # kept referenced: a collected client never completes its futures
    deleted = client.delete_records([TopicPartition(topic, p, 3) for p in (0, 1)])
    for future in deleted.values():
        future.result(timeout=30)
    # partition 0 committed past the new start; 1 committed before it (the drain resumes at the
    # start there, as on a partition it never committed)
    commit(topic, reader.group, {0: 4, 1: 1})

    assert reader.read(READ_SECONDS).partitions == {0: 1, 1: 2, 2: 0}


def test_reading_never_joins_the_group_nor_moves_its_offsets(new_topic, closing):
    topic = new_topic()
    group = f"lag-{uuid.uuid4().hex}"
    produce(topic, {0: 4, 1: 4, 2: 4})
    subscriber = GroupConsumerHook([topic], group).get_consumer()
    try:
        deadline = time.monotonic() + 60
        while len(subscriber.assignment()) < 3 and time.monotonic() < deadline:
            subscriber.poll(0.5)
        assert len(subscriber.assignment()) == 3, "the subscriber never got its partitions"
        subscriber.commit(
            offsets=[TopicPartition(topic, p, 1 + p) for p in range(3)], asynchronous=False
        )
        before = members(group)
        assert before == [subscriber.memberid()]

        reader, _ = reader_for(topic, group)
        closing(reader)
        for _ in range(3):
            assert reader.read(READ_SECONDS).partitions == {0: 3, 1: 2, 2: 1}
        reader.close()

        assert members(group) == before
        assert committed(topic, group) == {0: 1, 1: 2, 2: 3}
        assert len(subscriber.assignment()) == 3  # no rebalance took a partition away
    finally:
        subscriber.close()
    # and a group nobody else is in stays without members while read
    lonely, _ = reader_for(topic)
    closing(lonely)
    assert lonely.read(READ_SECONDS).error is None
    assert members(lonely.group) == []


def kafka_conn(bootstrap: str | None = None, **extra) -> str:
    """The test stack's Kafka connection (JSON), its bootstrap servers or extra changed."""
    base = json.loads(os.environ["AIRFLOW_CONN_SITEWATCH_KAFKA"])
    changes = {"bootstrap.servers": bootstrap} if bootstrap else {}
    return json.dumps({**base, "extra": {**base["extra"], **changes, **extra}})


def test_an_unreachable_broker_is_an_error_within_the_timeout_and_the_next_read_recovers(
    new_topic, closing, monkeypatch
):
    topic = new_topic()
    produce(topic, {0: 1, 1: 2})
    monkeypatch.setenv("SITEWATCH_TOPIC", topic)
    good = os.environ["AIRFLOW_CONN_SITEWATCH_KAFKA"]
    (port,) = free_ports(1)  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(f"127.0.0.1:{port}"))
    reader = drain_lag_reader()
    closing(reader)

    started = time.monotonic()
    lag = reader.read(3.0)
    took = time.monotonic() - started

    assert took < 3.0 + 5  # a hang guard: a dead broker must not hold a scrape
    assert lag.partitions == {}
    assert lag.error is not None
    assert f"127.0.0.1:{port}" in lag.error  # the consumer's own explanation is kept

    # the failed consumer was dropped, so the next read makes one on the connection as it is now
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", good)
    assert reader.read(READ_SECONDS) == KafkaLag(topic, DRAIN_GROUP, {0: 1, 1: 2, 2: 0})


def test_a_missing_topic_is_an_error_that_names_it(closing):
    name = f"test.missing-{uuid.uuid4().hex[:12]}"
    reader, _ = reader_for(name)
    closing(reader)

    lag = reader.read(READ_SECONDS)

    assert lag == KafkaLag(name, reader.group, {}, error=f"topic {name} does not exist")


def test_the_airflow_wiring_reads_the_drain_group_on_the_configured_topic(
    new_topic, closing, monkeypatch
):
    topic = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", topic)
    reader = drain_lag_reader()
    closing(reader)
    assert (reader.topic, reader.group) == (topic, DRAIN_GROUP)
    # No offsets are committed for the drain's group here: with concurrent test runs it may have
    # members (on other topics), and a broker refuses a commit from outside a group that has
    # some. The committed-offset arithmetic is covered above with the same hook.
    produce(topic, {0: 4, 1: 1})

    assert reader.read(READ_SECONDS) == KafkaLag(topic, DRAIN_GROUP, {0: 4, 1: 1, 2: 0})


def test_the_wiring_checks_tls_files_like_the_drain(tmp_path, closing, monkeypatch):
    missing = tmp_path / "nope.pem"
    conn = kafka_conn(**{"security.protocol": "SSL", "ssl.ca.location": str(missing)})
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", conn)
    reader = drain_lag_reader()
    closing(reader)

    lag = reader.read(READ_SECONDS)

    assert (
        lag.error == f"no Kafka client: sitewatch_kafka: ssl.ca.location {missing} does not exist"
    )


def test_a_connection_not_defined_is_an_error_not_an_exception(closing):
    reader = drain_lag_reader("sitewatch_undefined_kafka")
    closing(reader)

    lag = reader.read(READ_SECONDS)

    assert lag.partitions == {}
    assert lag.error.startswith("no Kafka client: ")
    assert "sitewatch_undefined_kafka" in lag.error


def test_reads_from_several_threads_at_once_each_get_the_lag(new_topic, closing):
    topic = new_topic()
    reader, make = reader_for(topic)
    closing(reader)
    produce(topic, {0: 3, 1: 1, 2: 2})
    results: list[KafkaLag] = []

    threads = [
        threading.Thread(target=lambda: results.append(reader.read(READ_SECONDS))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [KafkaLag(topic, reader.group, {0: 3, 1: 1, 2: 2})] * 4
    assert make.calls == 1
