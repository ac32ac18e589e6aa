"""The drain's sensor: waits, in the triggerer, until the topic holds a message not yet drained.

It builds on the Kafka provider's ``AwaitMessageSensor``, with a trigger that reads from where the
drain's consumer group stands instead of committing offsets of its own: it looks up the drain
group's committed offsets, assigns itself those positions (no group membership, no commits, so it
can never move the drain's offsets), and fires on the first message it finds. A backlog fires at
once; a caught-up drain waits for the next observation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.providers.apache.kafka.sensors.kafka import AwaitMessageSensor
from airflow.providers.apache.kafka.triggers.await_message import AwaitMessageTrigger
from airflow.triggers.base import TriggerEvent
from asgiref.sync import sync_to_async
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from sitewatch.errors import ConsumeError
from sitewatch.kafka import DRAIN_GROUP, SENSOR_GROUP, GroupConsumerHook


class UndrainedMessageTrigger(AwaitMessageTrigger):
    """Fires with ``{topic, partition, offset}`` of the first message past the drain's offsets."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{__name__}.{type(self).__name__}", kwargs

    async def run(self):
        self._consumer = await sync_to_async(self._assigned_consumer)()
        poll = sync_to_async(self._consumer.poll)
        while True:
            msg = await poll(self.poll_timeout)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ConsumeError(f"waiting on {msg.topic()} failed: {err}")
            yield TriggerEvent(
                {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
            )
            return

    def _assigned_consumer(self):
        admin = KafkaBaseHook(kafka_config_id=self.kafka_config_id).get_conn
        consumer = GroupConsumerHook(self.topics, SENSOR_GROUP, self.kafka_config_id).get_conn
        positions = []
        for topic in self.topics:
            metadata = admin.list_topics(topic, timeout=30).topics[topic]
            if metadata.error is not None:
                raise ConsumeError(f"topic {topic} is not available: {metadata.error}")
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            request = ConsumerGroupTopicPartitions(DRAIN_GROUP, partitions)
            future = admin.list_consumer_group_offsets([request])[DRAIN_GROUP]
            for tp in future.result(timeout=30).topic_partitions:
                # no committed offset yet: the drain starts from the beginning, so do we
                start = tp.offset if tp.offset >= 0 else -2  # OFFSET_BEGINNING
                positions.append(TopicPartition(topic, tp.partition, start))
        consumer.assign(positions)
        return consumer


class UndrainedMessageSensor(AwaitMessageSensor):
    """``AwaitMessageSensor`` that defers on ``UndrainedMessageTrigger`` (see the module doc)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(apply_function=None, **kwargs)

    def execute(self, context) -> Any:
        timeout = self.timeout
        if not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=timeout)
        self.defer(
            trigger=UndrainedMessageTrigger(
                topics=self.topics,
                kafka_config_id=self.kafka_config_id,
                poll_timeout=self.poll_timeout,
                poll_interval=self.poll_interval,
                commit_offset=False,
            ),
            method_name="execute_complete",
            timeout=timeout,
        )
