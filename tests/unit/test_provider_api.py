"""Pins the Kafka provider's (and Airflow's) extension points sitewatch builds on.

sitewatch's hooks override only ``_get_client`` and take every client from ``get_conn``,
``get_consumer`` or ``get_producer`` (sitewatch.airflow.hooks); its sensor subclasses
``AwaitMessageSensor`` and defers on a ``BaseTrigger`` of its own (sitewatch.airflow.sensor).
A provider or Airflow upgrade that changes any of this fails here, each assertion saying what
would break, instead of in production.
"""

import functools
import inspect
import json
import os
import subprocess
import sys
import time

import pytest
from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from airflow.providers.apache.kafka.sensors.kafka import AwaitMessageSensor
from airflow.providers.common.compat.module_loading import import_string
from airflow.sdk import BaseHook, BaseSensorOperator, Connection
from airflow.triggers.base import BaseTrigger, TriggerEvent

from sitewatch.airflow.hooks import AdminHook, GroupConsumerHook, ObservationProducerHook
from sitewatch.airflow.sensor import LOOK_ENV, UndrainedMessageSensor, UndrainedMessageTrigger

CONN_ID = "pinned_kafka"
TOKEN_CB = f"{__name__}.token"


def token(config_str):
    """An ``oauth_cb`` named on the connection, as MSK IAM / Google managed Kafka users do."""
    return "token", time.time() + 3600


def params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


@pytest.fixture
def connection(monkeypatch):
    extra = {"bootstrap.servers": "127.0.0.1:1", "oauth_cb": TOKEN_CB}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "kafka", "extra": extra})
    )
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", TOKEN_CB)


class _Client:
    """What a hook's ``_get_client`` returned, with the config it got."""

    def __init__(self, config):
        self.config = config
        self.subscribed = None

    def subscribe(self, topics):
        self.subscribed = topics


def _recording(hook_class):
    """``hook_class`` with ``_get_client`` replaced the way sitewatch's hooks replace it."""
    return type(f"Recording{hook_class.__name__}", (hook_class,), {"_get_client": _Client})


# --- hooks ---------------------------------------------------------------------------------------


def test_sitewatchs_hooks_still_extend_the_providers():
    for ours, theirs in [
        (GroupConsumerHook, KafkaConsumerHook),
        (ObservationProducerHook, KafkaProducerHook),
        (AdminHook, KafkaAdminClientHook),
    ]:
        assert issubclass(theirs, KafkaBaseHook), (
            f"{theirs.__name__} no longer derives from KafkaBaseHook: {ours.__name__}'s clients "
            "would lose the provider's connection handling"
        )
    assert params(KafkaBaseHook._get_client) == ["self", "config"], (
        "_get_client(self, config) changed: every sitewatch hook overrides it to add its TLS "
        "checks, error recording and forced settings; they would break or be bypassed"
    )


def test_hook_constructors_take_what_sitewatch_passes():
    assert params(KafkaConsumerHook.__init__)[:3] == ["self", "topics", "kafka_config_id"], (
        "KafkaConsumerHook(topics, kafka_config_id) changed: GroupConsumerHook calls it so"
    )
    assert params(KafkaProducerHook.__init__)[:2] == ["self", "kafka_config_id"], (
        "KafkaProducerHook(kafka_config_id=) changed: ObservationProducerHook is built so"
    )
    assert params(KafkaAdminClientHook.__init__)[:2] == ["self", "kafka_config_id"], (
        "KafkaAdminClientHook(kafka_config_id=) changed: the sensor's look builds AdminHook so"
    )
    hook = GroupConsumerHook(["t"], "g", CONN_ID)
    assert hook.kafka_config_id == CONN_ID and hook.topics == ["t"], (
        "the provider no longer keeps kafka_config_id/topics on the hook: sitewatch's hooks name "
        "the connection in their errors from kafka_config_id"
    )


def test_get_conn_is_a_cached_property_built_by_get_client(connection):
    assert isinstance(
        inspect.getattr_static(KafkaBaseHook, "get_conn"), functools.cached_property
    ), (
        "KafkaBaseHook.get_conn is no longer a cached property: the sensor's look reads "
        "hook.get_conn (no call) for its consumer and admin client"
    )
    client = _recording(KafkaAdminClientHook)(kafka_config_id=CONN_ID).get_conn
    assert isinstance(client, _Client), (
        "get_conn no longer returns _get_client(config): the look's admin client would be a "
        "plain one, without TLS file checks or error explanations"
    )
    assert client.config["bootstrap.servers"] == "127.0.0.1:1", (
        "get_conn no longer hands the connection's extra to _get_client as the librdkafka config"
    )


def test_get_consumer_and_get_producer_use_get_client(connection):
    assert params(KafkaConsumerHook.get_consumer) == ["self"], "get_consumer() changed signature"
    assert params(KafkaProducerHook.get_producer) == ["self"], "get_producer() changed signature"
    consumer = _recording(KafkaConsumerHook)(["a", "b"], kafka_config_id=CONN_ID).get_consumer()
    assert isinstance(consumer, _Client), (
        "get_consumer() no longer builds its client with _get_client: the drain's consumer would "
        "lose its own group, auto-commit off, TLS checks and error explanations"
    )
    assert consumer.subscribed == ["a", "b"], (
        "get_consumer() no longer subscribes to the hook's topics: the drain would read nothing"
    )
    producer = _recording(KafkaProducerHook)(kafka_config_id=CONN_ID).get_producer()
    assert isinstance(producer, _Client), (
        "get_producer() no longer builds its client with _get_client: observations would be "
        "published without idempotence, acks=all or a derived delivery wait"
    )


def test_the_config_carries_the_providers_callbacks(connection):
    config = _recording(KafkaConsumerHook)(["t"], kafka_config_id=CONN_ID).get_conn.config
    assert config["oauth_cb"] is token, (
        "the config handed to _get_client no longer has the connection's callbacks resolved: "
        "OAuth (oauth_cb) would fail in the drain and the sensor's look alike"
    )


# --- the sensor and its trigger ------------------------------------------------------------------


def test_the_sensor_still_extends_the_providers_with_the_parameters_sitewatch_passes():
    assert issubclass(AwaitMessageSensor, BaseSensorOperator), (
        "AwaitMessageSensor is no longer a BaseSensorOperator: timeout and soft_fail of "
        "wait_for_checks would mean something else"
    )
    taken = params(AwaitMessageSensor.__init__)
    for name in ("topics", "apply_function", "kafka_config_id", "commit_offset", "kwargs"):
        assert name in taken, (
            f"AwaitMessageSensor no longer takes {name}: UndrainedMessageSensor passes it "
            "(the drain DAG would fail to import)"
        )
    assert params(AwaitMessageSensor.execute_complete)[:3] == ["self", "context", "event"], (
        "AwaitMessageSensor.execute_complete(context, event) changed: wait_for_checks resumes "
        "there when the trigger fires"
    )
    assert {"topics", "kafka_config_id"} <= set(AwaitMessageSensor.template_fields), (
        "AwaitMessageSensor no longer templates topics/kafka_config_id"
    )
    sensor = UndrainedMessageSensor(
        task_id="wait", topics=["t"], kafka_config_id=CONN_ID, timeout=60, soft_fail=True
    )
    assert (sensor.topics, sensor.kafka_config_id) == (["t"], CONN_ID), (
        "AwaitMessageSensor no longer keeps topics/kafka_config_id: the trigger would get none"
    )
    assert sensor.execute_complete({}, event={"offset": 1}) == {"offset": 1}, (
        "execute_complete no longer returns the trigger's event"
    )


def test_the_trigger_contract():
    assert inspect.isasyncgenfunction(UndrainedMessageTrigger.run), (
        "the trigger's run must be an async generator of TriggerEvents"
    )
    assert set(BaseTrigger.__abstractmethods__) == {"serialize", "run"}, (
        "BaseTrigger's abstract methods changed: UndrainedMessageTrigger implements serialize "
        "and run only"
    )
    trigger = UndrainedMessageTrigger(topics=["t"], kafka_config_id=CONN_ID, look_seconds=7)
    classpath, kwargs = trigger.serialize()
    assert classpath == "sitewatch.airflow.sensor.UndrainedMessageTrigger", (
        "the trigger's classpath moved: a triggerer would fail to load triggers already deferred"
    )
    assert kwargs == {"topics": ["t"], "kafka_config_id": CONN_ID, "look_seconds": 7}
    # what the triggerer does with a stored trigger: import the path, call it with the kwargs
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    assert TriggerEvent({"offset": 1}).payload == {"offset": 1}, "TriggerEvent(payload) changed"


def test_the_trigger_can_hand_its_connection_to_the_look():
    assert inspect.iscoroutinefunction(BaseHook.aget_connection), (
        "BaseHook.aget_connection is gone or not async: the trigger resolves the connection "
        "with it, in the triggerer, for its look"
    )
    conn = Connection(conn_id=CONN_ID, conn_type="kafka", extra='{"bootstrap.servers": "b:9092"}')
    assert json.loads(conn.as_json()) == {
        "conn_type": "kafka",
        "extra": {"bootstrap.servers": "b:9092"},
    }, "Connection.as_json() changed: the look defines AIRFLOW_CONN_<ID> from it"


def test_the_look_can_import_airflow_below_the_triggerer():
    blocked = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "airflow-db-not-allowed:///"}
    done = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.apache.kafka.hooks.base"],
        env={**blocked, **LOOK_ENV},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        "Airflow no longer skips its database setup for PYTHON_OPERATORS_VIRTUAL_ENV_MODE: the "
        "sensor's look subprocess, started by the triggerer (whose children get an unusable "
        "sql_alchemy_conn), would fail on import and the drain would never be triggered\n"
        + done.stderr.decode()[-1000:]
    )
