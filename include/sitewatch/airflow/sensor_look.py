"""One look for an observation the drain has not stored yet, in a process of its own.

The drain's sensor (``sitewatch.airflow.sensor``) runs in Airflow's triggerer, one process shared
by every deferred task. A librdkafka client there crashed that process now and then (SIGSEGV), and a
crashed triggerer stops the drain for everyone. So the trigger runs each look as
``python -m sitewatch.airflow.sensor_look`` instead: the Kafka client lives and dies in this
short process, which reads its request as JSON on stdin (the config may hold secrets, so never
argv) and prints its answer as JSON on stdout.

Request: ``{"config": {librdkafka settings}, "topics": [...], "drain_group": "...",
"seconds": 30, "poll_timeout": 1}``. Answer: ``{"event": {"topic", "partition", "offset"}}`` or
``{"event": null}`` when nothing arrived in time; exit 2 with ``{"error": "..."}`` when Kafka
answered with an error.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from sitewatch.errors import ConsumeError


def first_undrained(
    config: dict, topics: list[str], drain_group: str, seconds: float, poll_timeout: float = 1.0
) -> dict | None:
    """The place of the first message past ``drain_group``'s committed offsets, or None.

    Reads without joining a group and commits nothing, so the drain's offsets cannot move.
    Raises ConsumeError when a topic is missing or the broker returns an error.
    """
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        consumer.assign(drain_positions(AdminClient(config), topics, drain_group))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = consumer.poll(min(poll_timeout, left))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ConsumeError(f"waiting on {msg.topic()} failed: {err.str()}")
            return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
        return None
    finally:
        consumer.close()


def drain_positions(admin: AdminClient, topics: list[str], group: str) -> list[TopicPartition]:
    """Where ``group`` stands on every partition of ``topics`` (the beginning where it has none)."""
    positions = []
    for topic in topics:
        metadata = admin.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise ConsumeError(f"topic {topic} is not available: {metadata.error.str()}")
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        request = ConsumerGroupTopicPartitions(group, partitions)
        answer = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
        for tp in answer.topic_partitions:
            start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            positions.append(TopicPartition(topic, tp.partition, start))
    return positions


def main() -> int:
    request = json.load(sys.stdin)
    try:
        event = first_undrained(
            request["config"],
            request["topics"],
            request["drain_group"],
            request["seconds"],
            request.get("poll_timeout", 1.0),
        )
    except (ConsumeError, KafkaException) as exc:
        json.dump({"error": str(exc)}, sys.stdout)
        return 2
    json.dump({"event": event}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
