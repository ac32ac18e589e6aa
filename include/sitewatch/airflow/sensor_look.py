"""One look for an observation the drain has not stored yet, in a process of its own.

The drain's sensor (``sitewatch.airflow.sensor``) runs in Airflow's triggerer, one process shared
by every deferred task. A librdkafka client there crashed that process now and then (SIGSEGV), and a
crashed triggerer stops the drain for everyone. So the trigger runs each look as
``python -m sitewatch.airflow.sensor_look`` instead: the Kafka clients live and die in this
short process, which reads its request as JSON on stdin (the connection may hold secrets, so
never argv) and prints its answer as JSON on stdout.

The clients come from the same hooks as the drain's (``sitewatch.airflow.hooks``): the same
librdkafka config with the provider's callbacks (an ``oauth_cb`` cannot cross a pipe, so it is
built here), the same TLS file checks and error explanations. The trigger sends the connection
as it resolved it, because this process cannot resolve everything the triggerer can: outside a
task or trigger Airflow reads connections from environment variables and a configured secrets
backend only, not from its metadata database, where the UI keeps them. It is defined here as
``AIRFLOW_CONN_<ID>``, Airflow's own way, for the hooks to find.

Request: ``{"conn_id": "...", "connection": "<Connection.as_json()>", "topics": [...],
"seconds": 120}``. Answer: ``{"event": {"topic", "partition", "offset"}}``, or ``{"event":
null}`` when nothing arrived in time; exit 2 with ``{"error": "...", "kind": "ConsumeError" or
"ConnectionConfigError"}`` when the connection is unusable or Kafka answered with an error.
"""

from __future__ import annotations

import json
import os
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from sitewatch.airflow.hooks import AdminHook, GroupConsumerHook
from sitewatch.errors import ConnectionConfigError, ConsumeError
from sitewatch.names import DRAIN_GROUP, SENSOR_GROUP

# How often a look checks its deadline; a message ends the poll at once, whatever this is.
POLL_SECONDS = 1.0
# Longest wait for one answer of the broker (metadata, the drain group's offsets).
REQUEST_SECONDS = 30.0


def first_undrained(conn_id: str, topics: list[str], seconds: float) -> dict | None:
    """The place of the first message past the drain group's committed offsets, or None.

    Reads with the sensor's own group id but without joining it, and commits nothing, so the
    drain's offsets cannot move. Raises ConnectionConfigError when the connection names an
    unusable TLS file (as the drain's hooks do), ConsumeError when a topic is missing, the broker
    returns an error, or nothing arrived and the client recorded a recognised connection failure
    (a TLS or SASL problem), each with the client's explanation.
    """
    consumer = GroupConsumerHook(topics, SENSOR_GROUP, conn_id).get_conn
    try:
        admin = AdminHook(kafka_config_id=conn_id).get_conn
        consumer.assign(drain_positions(admin, topics, DRAIN_GROUP))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = consumer.poll(min(POLL_SECONDS, left))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ConsumeError(f"waiting on {msg.topic()} failed: {err.str()}")
            return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
        why = consumer.errors.explain(recognised_only=True)
        if why:  # an empty topic and an unreachable broker look alike, but for this
            raise ConsumeError(f"reading from Kafka failed: {why}")
        return None
    finally:
        consumer.close()


def drain_positions(admin, topics: list[str], group: str) -> list[TopicPartition]:
    """Where ``group`` stands on every partition of ``topics`` (the beginning where it has none).

    admin: a RecordingAdminClient (``sitewatch.airflow.hooks.AdminHook``). Raises ConsumeError
    when a topic is missing or the broker does not answer, with the client's explanation.
    """
    positions = []
    for topic in topics:
        try:
            metadata = admin.list_topics(topic, timeout=REQUEST_SECONDS).topics[topic]
        except KafkaException as exc:
            raise ConsumeError(_failed(f"looking up topic {topic}", exc, admin)) from exc
        if metadata.error is not None:
            raise ConsumeError(f"topic {topic} is not available: {metadata.error.str()}")
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        request = ConsumerGroupTopicPartitions(group, partitions)
        try:
            answer = admin.list_consumer_group_offsets([request])[group].result(REQUEST_SECONDS)
        except (KafkaException, TimeoutError) as exc:
            raise ConsumeError(_failed(f"reading {group}'s offsets", exc, admin)) from exc
        for tp in answer.topic_partitions:
            start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            positions.append(TopicPartition(topic, tp.partition, start))
    return positions


def _failed(what: str, exc: Exception, client) -> str:
    text = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
    client.poll(0)  # an admin client runs its error_cb (the recorder) only when polled
    why = client.errors.explain()
    return f"{what} failed: {text}" + (f": {why}" if why else "")


def main() -> int:
    request = json.load(sys.stdin)
    # Airflow's logging writes to stdout (through objects made at import), and so may a callback:
    # the answer keeps the real stdout to itself, everything else goes to stderr.
    sys.stdout.flush()
    answer_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    os.environ[f"AIRFLOW_CONN_{request['conn_id'].upper()}"] = request["connection"]
    with answer_to:
        try:
            event = first_undrained(request["conn_id"], request["topics"], request["seconds"])
        except (ConnectionConfigError, ConsumeError, KafkaException) as exc:
            kind = ConnectionConfigError if isinstance(exc, ConnectionConfigError) else ConsumeError
            json.dump({"error": str(exc), "kind": kind.__name__}, answer_to)
            return 2
        json.dump({"event": event}, answer_to)
        return 0


if __name__ == "__main__":
    sys.exit(main())
