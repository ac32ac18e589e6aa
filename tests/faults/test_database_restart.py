"""PostgreSQL restarted (``pg_ctl restart -m fast``) in the middle of draining 50,000 observations.

The drain must fail with StorageError, keep the offsets of what it did not store uncommitted, and a
second drain must bring the table to exactly 50,000 rows: nothing lost, nothing doubled.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from sitewatch.airflow.hooks import GroupConsumerHook
from sitewatch.errors import StorageError
from sitewatch.names import DRAIN_GROUP
from sitewatch.pipeline.drain import drain
from sitewatch.pipeline.publish import PRODUCER_GUARANTEES
from sitewatch.storage.schema import migrate
from tests.builders import observation
from tests.faults.stack import Stack, private_stack, record  # noqa: F401

MESSAGES = 50_000
BATCH = 5_000
# Recent: the drain stores only checks inside the retention window.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def produce_observations(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_GUARANTEES, "linger.ms": 20})
    for i in range(count):
        at = T0 + timedelta(minutes=i // 50)
        obs = observation(f"load-{i % 50:02d}", at, up=i % 11 != 0, response_time_ms=10.0 + i % 97)
        while True:
            try:
                producer.produce(topic, key=obs.site.encode(), value=obs.to_message())
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()


def committed(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": DRAIN_GROUP})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=30
        )
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


@pytest.fixture
def results_schema(private_stack):  # noqa: F811
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with private_stack.results(autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with private_stack.results(autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_database_restart_mid_drain_stores_everything_once(
    private_stack: Stack,  # noqa: F811
    results_schema,
    monkeypatch,
):
    stack = private_stack
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", stack.env["AIRFLOW_CONN_SITEWATCH_KAFKA"])
    bootstrap = stack.env["SITEWATCH_KAFKA_BOOTSTRAP"]
    topic = f"faults.db.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    produce_observations(bootstrap, topic, MESSAGES)
    assert end_offsets(bootstrap, topic, 3) == MESSAGES

    def connect():
        conn = psycopg.connect(
            stack.env["SITEWATCH_PG_DSN"], options=f"-c search_path={results_schema}"
        )
        return conn

    def stored() -> tuple[int, int]:
        with connect() as conn:
            return conn.execute(
                "SELECT count(*), count(DISTINCT (site, scheduled_at, attempt)) FROM site_checks"
            ).fetchone()

    with connect() as conn:
        migrate(conn)

    # First drain, in a thread, until PostgreSQL is restarted under it.
    outcome: dict = {}

    def first_drain():
        conn = connect()
        consumer = GroupConsumerHook([topic], DRAIN_GROUP).get_consumer()
        try:
            outcome["result"] = drain(consumer, conn, batch_size=BATCH, poll_timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
            outcome["error"] = exc
        finally:
            consumer.close()
            conn.close()

    worker = threading.Thread(target=first_drain)
    worker.start()
    deadline = time.monotonic() + 120
    while stored()[0] == 0 and worker.is_alive():
        assert time.monotonic() < deadline, "the drain stored nothing in 120 s"
        time.sleep(0.02)
    rows_at_restart = stored()[0]
    stack.pg_ctl("restart", "-m", "fast", "-w", "-t", "60")
    worker.join(120)
    assert not worker.is_alive()
    assert rows_at_restart < MESSAGES, "the drain finished before the restart: nothing tested"
    assert isinstance(outcome.get("error"), StorageError), outcome
    rows_after_fault, _ = stored()
    offsets_after_fault = committed(bootstrap, topic, 3)
    # offsets move only after the rows committed, so they never run ahead of the table
    assert offsets_after_fault <= rows_after_fault < MESSAGES

    # Recovery: the next drain (a fresh connection, as the next DAG run would open) finishes it.
    conn = connect()
    consumer = GroupConsumerHook([topic], DRAIN_GROUP).get_consumer()
    try:
        second = drain(consumer, conn, batch_size=BATCH, poll_timeout=5.0)
    finally:
        consumer.close()
        conn.close()
    rows, distinct = stored()
    assert (rows, distinct) == (MESSAGES, MESSAGES)
    assert second.inserted == MESSAGES - rows_after_fault
    assert second.duplicates == rows_after_fault - offsets_after_fault
    assert committed(bootstrap, topic, 3) == MESSAGES
    record(
        "database_restart",
        {
            "fault": "pg_ctl restart -m fast during a drain (batches of 5,000)",
            "produced": MESSAGES,
            "stored_before_fault": rows_after_fault,
            "offsets_committed_before_fault": offsets_after_fault,
            "error": f"{type(outcome['error']).__name__}: {outcome['error']}"[:300],
            "second_drain_inserted": second.inserted,
            "redelivered_duplicates_skipped": second.duplicates,
            "stored": rows,
            "lost": MESSAGES - distinct,
            "duplicated": rows - distinct,
        },
    )
