"""Airflow hooks that turn the ``sitewatch_kafka`` connection into the clients sitewatch needs.

The connection's extra is the librdkafka configuration (bootstrap servers, TLS files, SASL). What
sitewatch's guarantees depend on is added here and cannot be switched off by a connection: the
producer's idempotence and ``acks=all``, and each consumer's own group with auto-commit off.
Every client also gets a ``ClientErrors`` recorder as its ``error_cb`` (as ``client.errors``), so a
failed publish or drain can say why (a TLS handshake failure otherwise surfaces as a timeout), and
the TLS files the connection names are checked before a client is built.

Every client comes from the provider's public ``get_conn`` (or ``get_consumer``/``get_producer``
on top of it), which builds the provider's config (connection extra, resolved callbacks, the
managed ``oauth_cb`` for MSK IAM and Google Managed Kafka) and hands it to ``_get_client``.
``_get_client`` is the provider's extension point (its own hooks differ only there), so the
hooks here override it and nothing else; tests/unit/test_provider_api.py pins that contract.
"""

from __future__ import annotations

from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from sitewatch.config.connection_errors import (
    ClientErrors,
    check_files,
    explain_postgres,
    kafka_build_cause,
)
from sitewatch.errors import ConnectionConfigError, StorageError
from sitewatch.names import (
    DRAIN_GROUP,
    KAFKA_CONN_ID,
    POSTGRES_ALERTING_CONN_ID,
    POSTGRES_CONN_ID,
    POSTGRES_READER_CONN_ID,
    topic,
)
from sitewatch.pipeline.lag import LagReader
from sitewatch.pipeline.publish import PRODUCER_DEFAULTS, PRODUCER_GUARANTEES, delivery_wait


class _RecordsErrors:
    """Mixed into a client class: its transport errors are kept in ``errors`` (a ClientErrors)."""

    def __init__(self, config: dict):
        self.errors = ClientErrors(config, config.get("error_cb"))
        super().__init__({**config, "error_cb": self.errors})


class RecordingProducer(_RecordsErrors, Producer):
    """A ``Producer`` with ``errors``, and ``delivery_wait``: how long ``publish`` waits for a
    delivery report (see sitewatch.pipeline.publish.delivery_wait)."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.delivery_wait = delivery_wait(config)  # after librdkafka accepted the config


class RecordingConsumer(_RecordsErrors, Consumer):
    """A ``Consumer`` whose transport errors are kept in ``errors`` (a ClientErrors)."""


class RecordingAdminClient(_RecordsErrors, AdminClient):
    """An ``AdminClient`` whose transport errors are kept in ``errors`` (a ClientErrors)."""


def build(client_class, config: dict, conn_id: str):
    """``client_class(config)`` after checking its files; ConnectionConfigError if unusable."""
    check_files(config, conn_id)
    try:
        return client_class(config)
    except KafkaException as exc:
        cause = kafka_build_cause(exc)
        if cause is None:
            raise
        raise ConnectionConfigError(f"{conn_id}: {cause} ({exc.args[0].str()})") from exc


class ObservationProducerHook(KafkaProducerHook):
    """A producer on the connection with idempotence and ``acks=all`` forced on."""

    def _get_client(self, config):
        config = {**PRODUCER_DEFAULTS, **config, **PRODUCER_GUARANTEES}
        return build(RecordingProducer, config, self.kafka_config_id)


def observation_producer(conn_id: str = KAFKA_CONN_ID) -> RecordingProducer:
    """The producer of ``ObservationProducerHook`` on ``conn_id``, from ``get_conn``: the
    provider's ``get_producer`` also logs the object's address, noise in every attempt's log."""
    return ObservationProducerHook(kafka_config_id=conn_id).get_conn


class GroupConsumerHook(KafkaConsumerHook):
    """A consumer on the connection that joins ``group_id`` and commits only when told to.

    The group is set here rather than in the connection so that the drain and its sensor, which
    share one connection, can never share a group (and so never move each other's offsets).
    ``get_consumer()`` subscribes to ``topics`` (the drain); ``get_conn`` is the same consumer
    before subscribing, for a reader that assigns partitions itself (the sensor's look).
    """

    def __init__(self, topics, group_id: str, kafka_config_id: str = KAFKA_CONN_ID):
        super().__init__(topics=topics, kafka_config_id=kafka_config_id)
        self.group_id = group_id

    def _get_client(self, config):
        config = {
            **config,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        return build(RecordingConsumer, config, self.kafka_config_id)


def drain_lag_reader(conn_id: str = KAFKA_CONN_ID) -> LagReader:
    """A LagReader of the drain group (``DRAIN_GROUP``) on ``names.topic()`` via ``conn_id``.

    Its consumers are the drain's (``GroupConsumerHook``: the same config, TLS file checks and
    ``errors``) taken from ``get_conn``, before any subscribe, so reading the lag never joins
    the drain's group. The connection is looked up for each new consumer, that is on the first
    read and after a failed one.
    """
    observed = topic()
    return LagReader(
        lambda: GroupConsumerHook([observed], DRAIN_GROUP, conn_id).get_conn, observed, DRAIN_GROUP
    )


class AdminHook(KafkaAdminClientHook):
    """An admin client on the connection, with the same checks and ``errors`` as the others."""

    def _get_client(self, config):
        return build(RecordingAdminClient, config, self.kafka_config_id)


# The connections whose every statement stops after SITEWATCH_QUERY_TIMEOUT_SECONDS: alerting's
# reads run in the drain, which waits for them, and the Sites page's in the API server's shared
# thread pool; both grow with the sites and the history, not with one request. The drain's own
# writes and the owner's migrations and maintenance keep the server's limit: their work grows
# with a batch or a table, and nothing else waits on it.
BOUNDED_CONN_IDS = frozenset({POSTGRES_ALERTING_CONN_ID, POSTGRES_READER_CONN_ID})


def results_connection(conn_id: str = POSTGRES_CONN_ID):
    """A psycopg 3 connection to the results database on Airflow connection ``conn_id``.

    The one way sitewatch opens it: ``POSTGRES_CONN_ID`` (the tables' owner) for migrations and
    maintenance, a narrower one for the drain, alerting and the Sites page (``names``). A narrower
    connection that is not defined falls back to ``POSTGRES_CONN_ID``, so a deployment with one
    connection keeps working. One opened for ``BOUNDED_CONN_IDS`` (fallback or not) bounds each
    statement by ``SITEWATCH_QUERY_TIMEOUT_SECONDS``. Raises StorageError saying why it could not
    connect, with a TLS problem (a missing CA file, a certificate that does not match the host)
    named as such, and SettingError for an unusable timeout.
    """
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from sitewatch.storage.timeouts import bound_session, query_timeout

    timeout = query_timeout() if conn_id in BOUNDED_CONN_IDS else None
    conn_id = _defined_or_owner(conn_id)
    hook = PostgresHook(postgres_conn_id=conn_id)
    try:
        conn = hook.get_conn()
    except psycopg.OperationalError as exc:
        why = explain_postgres(hook.get_connection(conn_id), exc)
        raise StorageError(f"PostgreSQL unreachable on {conn_id}: {why}") from exc
    if timeout is not None:
        bound_session(conn, timeout)
    return conn


def _defined_or_owner(conn_id: str) -> str:
    """``conn_id`` when Airflow knows it (an empty ``AIRFLOW_CONN_*`` counts as unknown), else
    ``POSTGRES_CONN_ID``."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    if conn_id == POSTGRES_CONN_ID:
        return conn_id
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return POSTGRES_CONN_ID
    return conn_id
