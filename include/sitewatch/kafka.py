"""Airflow hooks that turn the ``sitewatch_kafka`` connection into the clients sitewatch needs.

The connection's extra is the librdkafka configuration (bootstrap servers, TLS files, SASL). What
sitewatch's guarantees depend on is added here and cannot be switched off by a connection: the
producer's idempotence and ``acks=all``, and each consumer's own group with auto-commit off.
"""

from __future__ import annotations

from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

from sitewatch.publish import PRODUCER_DEFAULTS, PRODUCER_GUARANTEES

KAFKA_CONN_ID = "sitewatch_kafka"
DRAIN_GROUP = "sitewatch-drain"
SENSOR_GROUP = "sitewatch-drain-sensor"


class ObservationProducerHook(KafkaProducerHook):
    """A producer on the connection with idempotence and ``acks=all`` forced on."""

    def _get_client(self, config):
        return super()._get_client({**PRODUCER_DEFAULTS, **config, **PRODUCER_GUARANTEES})


class GroupConsumerHook(KafkaConsumerHook):
    """A consumer on the connection that joins ``group_id`` and commits only when told to.

    The group is set here rather than in the connection so that the drain and its sensor, which
    share one connection, can never share a group (and so never move each other's offsets).
    """

    def __init__(self, topics, group_id: str, kafka_config_id: str = KAFKA_CONN_ID):
        super().__init__(topics=topics, kafka_config_id=kafka_config_id)
        self.group_id = group_id

    def _get_client(self, config):
        return super()._get_client(
            {
                **config,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
