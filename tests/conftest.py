"""Fixtures shared by the suites that talk to the real local Kafka (started by scripts/dev.sh)."""

import os
import uuid

import pytest


@pytest.fixture
def new_topic():
    """Factory: create a fresh topic (3 partitions) on the ``sitewatch_kafka`` connection.

    Each test gets topics of its own, so tests never read each other's messages. Topics are
    deleted afterwards.
    """
    if "AIRFLOW_CONN_SITEWATCH_KAFKA" not in os.environ:
        pytest.fail("AIRFLOW_CONN_SITEWATCH_KAFKA is not set: run the tests with `make test`")
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
    from confluent_kafka.admin import NewTopic

    admin = KafkaBaseHook(kafka_config_id="sitewatch_kafka").get_conn
    created = []

    def make(partitions: int = 3) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)
