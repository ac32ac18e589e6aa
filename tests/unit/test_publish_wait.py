"""How long publish waits for a delivery report: the producer's message.timeout.ms plus a margin.

The end-to-end cases use a real producer against a closed local port (no broker needed): librdkafka
gives up after its message timeout and reports, and publish must still be waiting then.
"""

import json
import time

import pytest

from sitewatch.airflow.hooks import ObservationProducerHook
from sitewatch.errors import DeliveryError
from sitewatch.pipeline.publish import PRODUCER_DEFAULTS, delivery_wait, publish
from tests.builders import observation
from tests.conftest import free_ports


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (PRODUCER_DEFAULTS, 35.0),  # sitewatch's default: 30 s and the 5 s margin
        ({}, 305.0),  # librdkafka's own default of 300 s
        ({"message.timeout.ms": 120_000}, 125.0),
        ({"message.timeout.ms": "90000"}, 95.0),  # a connection extra may hold strings
        ({"delivery.timeout.ms": 60_000}, 65.0),
        # aliases: librdkafka applies the config in order, so the one set last counts
        ({"message.timeout.ms": 30_000, "delivery.timeout.ms": 60_000}, 65.0),
        ({"delivery.timeout.ms": 60_000, "message.timeout.ms": 30_000}, 35.0),
        ({"message.timeout.ms": 0}, None),  # "retry forever": wait as long as librdkafka does
    ],
)
def test_delivery_wait_follows_the_effective_message_timeout(config, expected):
    assert delivery_wait(config) == expected


def _producer(monkeypatch, **extra):
    (port,) = free_ports(1)  # nothing listens there
    extra = {"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0, **extra}
    conn = json.dumps({"conn_type": "kafka", "extra": extra})
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", conn)
    return ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, 35.0),
        ({"message.timeout.ms": 120_000}, 125.0),
        ({"delivery.timeout.ms": 45_000}, 50.0),  # set after sitewatch's default, so it counts
    ],
)
def test_the_hooks_producer_knows_its_wait(monkeypatch, extra, expected):
    assert _producer(monkeypatch, **extra).delivery_wait == expected


def test_publish_waits_for_librdkafkas_own_report(monkeypatch):
    # the alias set last (by the connection) is what librdkafka applies: 2 s, not sitewatch's 30 s
    producer = _producer(monkeypatch, **{"delivery.timeout.ms": 2000})
    assert producer.delivery_wait == 7.0
    started = time.monotonic()
    with pytest.raises(DeliveryError) as failure:
        publish(producer, observation("wait"), to_topic="sitewatch.wait-test")
    elapsed = time.monotonic() - started
    # librdkafka's report came first (its own error, not "within 7s"), after its 2 s
    assert "Kafka did not confirm delivery to sitewatch.wait-test: Local: Message timed out" in str(
        failure.value
    )
    assert 1.5 < elapsed < 6.5


def test_an_explicit_timeout_still_wins(monkeypatch):
    producer = _producer(monkeypatch)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"within 1s \(1 message\(s\) still queued\)"):
        publish(producer, observation("wait"), to_topic="sitewatch.wait-test", timeout=1.0)
    assert time.monotonic() - started < 5
