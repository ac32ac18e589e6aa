"""Watch the watcher against the real Kafka and PostgreSQL: looks taken by
``sitewatch.judge.watch.look`` at a fresh topic and a group of the test's own (which it commits
for, standing in for the drain), judged by ``decide`` on a clock that moves a minute a look."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import pytest
from confluent_kafka import TopicPartition

from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook
from sitewatch.alerting.rules import Kind
from sitewatch.judge.watch import WatchState, decide, look
from sitewatch.pipeline.lag import LagReader
from tests.conftest import free_ports

pytestmark = pytest.mark.services

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LOOK = 10.0


class Drain:
    """A group on ``topic`` that commits when told to, as the drain does after each batch."""

    def __init__(self, topic: str) -> None:
        self.topic, self.group = topic, f"watch-{uuid.uuid4().hex}"

    def commit(self, partition: int, offset: int) -> None:
        consumer = GroupConsumerHook([self.topic], self.group).get_conn
        try:
            consumer.assign([TopicPartition(self.topic, partition)])
            consumer.commit(
                offsets=[TopicPartition(self.topic, partition, offset)], asynchronous=False
            )
        finally:
            consumer.close()


def produce(topic: str, partition: int, count: int) -> None:
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    for i in range(count):
        producer.produce(topic, value=f"m{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


@pytest.fixture
def watching(new_topic, pg_dsn):
    """(drain, take) where ``take(minute)`` is a look at minute ``minute`` after T0 at the
    topic's lag for the drain's group and at the results database."""
    topic = new_topic()
    drain = Drain(topic)
    reader = LagReader(lambda: GroupConsumerHook([topic], drain.group).get_conn, topic, drain.group)

    def take(minute: int, connect=None):
        connect = connect or partial(psycopg.connect, pg_dsn, connect_timeout=5)
        return look(reader, connect, LOOK, now=lambda: T0 + timedelta(minutes=minute))

    yield drain, take
    reader.close()


def test_messages_at_offsets_that_do_not_move_are_a_stall_and_moving_ones_are_not(watching):
    drain, take = watching
    produce(drain.topic, 1, 5)
    drain.commit(1, 2)  # the drain stored two, then stopped

    state, sent = WatchState(), []
    for minute in range(5):
        seen = take(minute)
        assert (seen.kafka_error, seen.database_error) == (None, None)
        assert (seen.lag[1], seen.committed[1]) == (3, 2)
        assert seen.committed[0] == -1  # nothing committed there
        state, alert = decide(state, seen)
        sent.append(alert and alert.kind)
    assert sent == [None, None, None, Kind.PIPELINE, None]
    assert alert is None and state.problem_since == T0
    assert state.error == "drain stalled"

    # the drain goes on: it stores what waits, and what keeps coming
    for minute, produced, stored in ((5, 2, 6), (6, 3, 9)):
        produce(drain.topic, 1, produced)
        drain.commit(1, stored)
        state, alert = decide(state, take(minute))
        sent.append(alert and alert.kind)
    assert sent[5:] == [None, Kind.PIPELINE_OVER]
    assert alert.since == T0 and alert.concern == "pipeline"


def test_a_drain_that_keeps_up_is_never_a_problem_however_busy(watching):
    drain, take = watching
    state, stored = WatchState(), 0
    for minute in range(6):
        produce(drain.topic, 0, 4)
        drain.commit(0, stored)  # always a batch behind, never stuck
        stored += 4
        state, alert = decide(state, take(minute))
        assert alert is None
    assert state.waiting[0][1] == T0 + timedelta(minutes=5)


def test_a_database_that_refuses_and_a_broker_that_is_gone_are_what_the_look_found(
    watching, monkeypatch
):
    drain, take = watching
    (port,) = free_ports(1)
    refused = take(0, partial(psycopg.connect, f"postgresql://x@127.0.0.1:{port}/x"))
    assert refused.kafka_error is None
    assert "refused" in refused.database_error.lower()

    monkeypatch.setenv(
        "AIRFLOW_CONN_SITEWATCH_KAFKA",
        json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": f"127.0.0.1:{port}"}}),
    )
    group = drain.group
    gone = LagReader(lambda: GroupConsumerHook([drain.topic], group).get_conn, drain.topic, group)
    started = time.monotonic()
    try:
        seen = look(gone, partial(psycopg.connect, f"postgresql://x@127.0.0.1:{port}/x"), 3)
    finally:
        gone.close()
    assert time.monotonic() - started < 5  # bounded by the look's timeout, however dead
    assert seen.kafka_error and seen.database_error and seen.lag == {}
    state, alert = decide(WatchState(), seen)
    assert alert is None  # one look: not sure yet
