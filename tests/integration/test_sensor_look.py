"""The sensor's look builds its Kafka clients through sitewatch's hooks, like the drain.

Its subprocess gets the connection the trigger resolved (here from ``AIRFLOW_CONN_SITEWATCH_KAFKA``,
as in every deployment that defines connections in the environment) and turns it into clients
with the same config, callbacks, TLS file checks and error texts as the drain's.
"""

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook
from sitewatch.airflow.sensor import UndrainedMessageTrigger
from sitewatch.config.connection_errors import UNTRUSTED
from sitewatch.errors import ConnectionConfigError, ConsumeError
from sitewatch.names import DRAIN_GROUP
from sitewatch.observation import Observation
from sitewatch.pipeline.drain import drain
from tests.builders import observation
from tests.servers import start_handshake_only

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
TOKEN_CB = "tests.integration.test_sensor_look.record_token"
TOKEN_LOG = "SITEWATCH_TEST_TOKEN_LOG"


def record_token(config_str):
    """An ``oauth_cb`` named on the connection; notes each call in the file ``$TOKEN_LOG``."""
    with open(os.environ[TOKEN_LOG], "a") as log:
        log.write(f"pid={os.getpid()}\n")
    return "token", time.time() + 3600, "sitewatch", {}


def kafka_conn(**changes) -> str:
    """The test stack's Kafka connection (JSON), with extra settings changed."""
    base = json.loads(os.environ["AIRFLOW_CONN_SITEWATCH_KAFKA"])
    return json.dumps({**base, "extra": {**base["extra"], **changes}})


async def first_event(trigger: UndrainedMessageTrigger, timeout: float):
    gen = trigger.run()
    try:
        return await asyncio.wait_for(gen.__anext__(), timeout)
    finally:
        await gen.aclose()


def test_a_missing_tls_file_is_named_word_for_word_as_by_the_drain(monkeypatch, tmp_path):
    missing = tmp_path / "nope.pem"
    conn = kafka_conn(**{"security.protocol": "SSL", "ssl.ca.location": str(missing)})
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", conn)
    with pytest.raises(ConnectionConfigError) as drains:
        GroupConsumerHook(["t"], DRAIN_GROUP).get_consumer()
    expected = f"sitewatch_kafka: ssl.ca.location {missing} does not exist"
    assert str(drains.value) == expected

    trigger = UndrainedMessageTrigger(topics=["t"], kafka_config_id="sitewatch_kafka")
    with pytest.raises(ConnectionConfigError) as looks:
        asyncio.run(first_event(trigger, 60))
    assert str(looks.value) == expected


@pytest.fixture
def tls_server(tmp_path):
    """A TLS listener (no Kafka behind it) with a certificate of a CA the client does not trust;
    returns ``(port, that client's CA file)``."""
    spec = importlib.util.spec_from_file_location("tls_certs", ROOT / "scripts" / "tls_certs.py")
    certs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(certs)
    ca = certs.make_ca()
    cert, key = certs.issue(ca, "localhost", ["localhost", "127.0.0.1"])
    certs.write(tmp_path / "server.pem", certs.key_pem(key) + certs.cert_pem(cert))
    certs.write(tmp_path / "other-ca.pem", certs.cert_pem(certs.make_ca("other")[0]))
    listener = start_handshake_only(tmp_path / "server.pem")
    yield listener.getsockname()[1], str(tmp_path / "other-ca.pem")
    listener.close()


def test_a_tls_failure_gets_the_same_explanation_as_in_the_drain(monkeypatch, tls_server):
    port, wrong_ca = tls_server
    conn = json.dumps(
        {
            "conn_type": "kafka",
            "extra": {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "security.protocol": "SSL",
                "ssl.ca.location": wrong_ca,
                "log_level": 0,
            },
        }
    )
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", conn)
    consumer = GroupConsumerHook(["t"], DRAIN_GROUP).get_consumer()
    try:
        with pytest.raises(ConsumeError) as drains:
            drain(consumer, None, poll_timeout=3.0)  # nothing arrives, so no database is used
    finally:
        consumer.close()
    assert str(drains.value).startswith(f"reading from Kafka failed: {UNTRUSTED} (")

    # the look's admin client asks for the topic first, and waits for its answer up to 30 s
    trigger = UndrainedMessageTrigger(topics=["t"], kafka_config_id="sitewatch_kafka")
    with pytest.raises(ConsumeError) as looks:
        asyncio.run(first_event(trigger, 90))
    text = str(looks.value)
    assert text.startswith("looking for undrained checks failed: looking up topic t failed: ")
    assert f": {UNTRUSTED} (" in text
    assert "certificate verify failed" in text  # the client's own error follows the cause


def test_the_look_runs_where_the_triggerer_blocks_the_database(monkeypatch, new_topic):
    """The triggerer's children inherit an unusable database URL (Airflow's block_orm_access),
    on which a plain ``import airflow`` fails: the look must still start and find the message."""
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    topic = new_topic()
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    producer.produce(topic, key=b"s", value=_observation().to_message(), partition=2)
    assert producer.flush(30) == 0

    trigger = UndrainedMessageTrigger(topics=[topic], kafka_config_id="sitewatch_kafka")
    event = asyncio.run(first_event(trigger, 60))
    assert event.payload == {"topic": topic, "partition": 2, "offset": 0}


def test_the_look_uses_the_connection_the_trigger_resolved(new_topic):
    """A connection kept in Airflow's metadata database (the UI's) is no environment variable
    the subprocess could read: it must work from what the trigger sends."""
    topic = new_topic()
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    producer.produce(topic, key=b"s", value=_observation().to_message(), partition=0)
    assert producer.flush(30) == 0

    request = {
        "conn_id": "sitewatch_kafka",
        "connection": os.environ["AIRFLOW_CONN_SITEWATCH_KAFKA"],
        "topics": [topic],
        "seconds": 20,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    done = subprocess.run(
        [sys.executable, "-m", "sitewatch.airflow.sensor_look"],
        input=json.dumps(request).encode(),
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout) == {"event": {"topic": topic, "partition": 0, "offset": 0}}


def test_the_connections_oauth_cb_reaches_the_looks_clients(monkeypatch, tmp_path):
    """The provider resolves a callback named on the connection (allow-listed) into the config;
    an ``oauth_cb`` cannot cross a pipe, so the look's own hooks must build it, as the drain's."""
    log = tmp_path / "tokens.log"
    monkeypatch.setenv(TOKEN_LOG, str(log))
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", TOKEN_CB)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    sasl = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER"}
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(oauth_cb=TOKEN_CB, **sasl))

    # the drain's consumer calls it (librdkafka asks for the first token as the client starts)
    GroupConsumerHook(["t"], DRAIN_GROUP).get_consumer().close()
    assert log.read_text() == f"pid={os.getpid()}\n"
    log.unlink()

    async def until_both_clients_asked():
        trigger = UndrainedMessageTrigger(topics=["t"], kafka_config_id="sitewatch_kafka")
        looking = asyncio.ensure_future(first_event(trigger, 120))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not looking.done():
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            await asyncio.sleep(0.2)
        looking.cancel()  # the broker speaks no SASL: this look would only time out
        await asyncio.gather(looking, return_exceptions=True)

    asyncio.run(until_both_clients_asked())
    calls = log.read_text().splitlines()
    # the consumer's and the admin client's, both in the look's process, not this one
    assert len(calls) == 2 and len(set(calls)) == 1, calls
    assert calls[0] != f"pid={os.getpid()}"


def _observation() -> Observation:
    return observation("s", (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0))
