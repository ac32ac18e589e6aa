"""Kafka over mutual TLS and PostgreSQL with verify-full, against servers of the test's own.

A module fixture starts a second broker and PostgreSQL with ``SITEWATCH_TLS=1 scripts/dev.sh
services`` in a state directory of its own (the shared stack is untouched) and stops them at the
end. Beside the broker's SSL listener it adds two more with deliberately bad certificates (one
expired, one for another host) through ``SITEWATCH_KAFKA_PROPERTIES``.
"""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from sitewatch.airflow.drain_dag import drain_dag
from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook, results_connection
from sitewatch.config.connection_errors import EXPIRED, HOSTNAME, REFUSED, UNTRUSTED
from sitewatch.errors import ConnectionConfigError, ConsumeError, DeliveryError, StorageError
from sitewatch.names import DRAIN_GROUP
from sitewatch.observation import Observation
from sitewatch.pipeline.drain import drain
from sitewatch.pipeline.publish import publish
from sitewatch.storage.schema import migrate
from tests.builders import observation, one_site_dag, sites_file
from tests.conftest import free_ports
from tests.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
KEY_PASSWORD = "kp-" + uuid.uuid4().hex
# Recent: the drain stores only checks inside the retention window.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def _certs_module():
    spec = importlib.util.spec_from_file_location("tls_certs", ROOT / "scripts" / "tls_certs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bad_certificates(certs, state: Path) -> Path:
    """Certificates the good CA did not sign, or signed wrongly; returns their directory."""
    bad = state / "bad"
    bad.mkdir()
    ca = certs.load_ca(state / "tls")
    other = certs.make_ca("some other CA")
    certs.write(bad / "other-ca.pem", certs.cert_pem(other[0]))
    leaves = {
        "stranger": certs.issue(other, "stranger", client=True),
        "expired-client": certs.issue(ca, "old", client=True, expired=True),
        "locked": certs.issue(ca, "locked", client=True),
        "expired-server": certs.issue(ca, "localhost", certs.SERVER_NAMES, expired=True),
        "elsewhere": certs.issue(ca, "elsewhere.example", ["elsewhere.example"]),
    }
    for name, (cert, key) in leaves.items():
        password = KEY_PASSWORD if name == "locked" else None
        certs.write(bad / f"{name}.cert", certs.cert_pem(cert))
        certs.write(bad / f"{name}.key", certs.key_pem(key, password), secret=True)
        certs.write(bad / f"{name}.pem", certs.key_pem(key) + certs.cert_pem(cert), secret=True)
    return bad


SCRAM_USER, SCRAM_PASSWORD = "sitewatch", "scram-pw-5d1e8a"


@pytest.fixture(scope="module")
def tls():
    """The TLS stack: ``kafka`` and ``postgres`` connection dicts, ports, certificate dirs."""
    certs = _certs_module()
    with Stack.temporary("sitewatch-tls-", tls=True) as stack:
        state = stack.state
        kafka = stack.ports["SITEWATCH_KAFKA_PORT"]
        controller = stack.ports["SITEWATCH_KAFKA_CONTROLLER_PORT"]
        kafka_tls = stack.ports["SITEWATCH_KAFKA_TLS_PORT"]
        expired, elsewhere, scram = free_ports(3)
        certs.init(state / "tls")  # scripts/dev.sh keeps certificates that already exist
        bad = _bad_certificates(certs, state)
        extra = state / "extra.properties"
        extra.write_text(
            f"listeners=PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller},"
            f"SSL://127.0.0.1:{kafka_tls},EXPIRED://127.0.0.1:{expired},"
            f"ELSEWHERE://127.0.0.1:{elsewhere},SCRAM://127.0.0.1:{scram}\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,"
            "EXPIRED:SSL,ELSEWHERE:SSL,SCRAM:SASL_SSL\n"
            # SASL_SSL with SCRAM, as hosted Kafka offers besides client certificates
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{kafka},SSL://127.0.0.1:{kafka_tls},"
            f"SCRAM://127.0.0.1:{scram}\n"
            "sasl.enabled.mechanisms=SCRAM-SHA-256\n"
            "listener.name.scram.ssl.client.auth=none\n"
            "listener.name.scram.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
            f"listener.name.expired.ssl.keystore.location={bad}/expired-server.pem\n"
            f"listener.name.elsewhere.ssl.keystore.location={bad}/elsewhere.pem\n"
        )
        stack.settings.update(
            SITEWATCH_KAFKA_PROPERTIES=str(extra),
            SITEWATCH_KAFKA_SCRAM=f"{SCRAM_USER}:{SCRAM_PASSWORD}",
        )
        written = stack.services()
        _wait_for_group_coordinator(json.loads(written["SITEWATCH_KAFKA_TLS_CONN"])["extra"])
        yield SimpleNamespace(
            kafka=json.loads(written["SITEWATCH_KAFKA_TLS_CONN"]),
            postgres=json.loads(written["SITEWATCH_POSTGRES_TLS_CONN"]),
            dir=state / "tls",
            bad=bad,
            state=state,
            ports={"expired": expired, "elsewhere": elsewhere, "scram": scram},
        )


def _wait_for_group_coordinator(config: dict) -> None:
    """Wait until a fresh broker has loaded its offsets topic (created on the first group call).

    Asked through an AdminClient while it loads, librdkafka 2.16 can crash the process
    (rd_kafka_cgrp_op in the ListConsumerGroupOffsets response), so the drain's sensor must not
    be the first to ask about the drain's group: a consumer asks first.
    """
    deadline = time.monotonic() + 60
    consumer = Consumer({**config, "group.id": DRAIN_GROUP, "log_level": 0})
    try:
        while True:
            try:
                consumer.committed([TopicPartition("sitewatch.checks", 0)], timeout=10)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def kafka_conn(tls, **changes) -> str:
    """The TLS Kafka connection as JSON, with extra settings changed (None removes one)."""
    extra = {**tls.kafka["extra"], "log_level": 0, **changes}
    extra = {k: v for k, v in extra.items() if v is not None}
    return json.dumps({"conn_type": "kafka", "extra": extra})


def postgres_conn(tls, password=None, **extra_changes) -> str:
    conn = {**tls.postgres, "extra": {**tls.postgres["extra"], **extra_changes}}
    if password is not None:
        conn["password"] = password
    return json.dumps(conn)


@pytest.fixture
def tls_topic(tls, monkeypatch):
    """A fresh topic on the TLS broker; both connections point at the TLS stack."""
    admin = AdminClient({k: v for k, v in tls.kafka["extra"].items()})
    name = f"tls.{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(timeout=30)
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(tls))
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES", postgres_conn(tls))
    return name


def site_dag_for(url: str, tmp_path, monkeypatch):
    return one_site_dag(sites_file(["tls-e2e"], url, retries=0), tmp_path, monkeypatch)


# --- end to end ----------------------------------------------------------------------------------


def test_site_to_table_over_mutual_tls_with_no_secret_in_the_logs(
    tls, tls_topic, web, tmp_path, monkeypatch, capfd, caplog
):
    # an encrypted client key (its password in the connection) and the database's password
    locked = {
        "ssl.certificate.location": str(tls.bad / "locked.cert"),
        "ssl.key.location": str(tls.bad / "locked.key"),
        "ssl.key.password": KEY_PASSWORD,
    }
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(tls, **locked))
    # the drain run ends once caught up, instead of waiting in the triggerer for more checks
    monkeypatch.setenv("SITEWATCH_DRAIN_MAX_SECONDS", "1")
    caplog.set_level("INFO")

    assert site_dag_for(web.url, tmp_path, monkeypatch).test().state == "success"
    assert drain_dag().test().state == "success"

    conn = results_connection()  # verify-full against the stack's CA
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
            cur.execute("SELECT site, up, status_code FROM site_checks")
            assert cur.fetchall() == [("tls-e2e", True, 200)]
    finally:
        conn.close()

    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "site=tls-e2e attempt=1" in logs  # the task logs were captured ...
    for secret in (KEY_PASSWORD, tls.postgres["password"]):
        assert secret not in logs  # ... and hold no secret


# --- Kafka: each certificate problem says what it is ---------------------------------------------

KAFKA_CASES = {
    "wrong CA": (lambda t: {"ssl.ca.location": str(t.bad / "other-ca.pem")}, UNTRUSTED),
    "missing client certificate": (
        lambda t: {"ssl.certificate.location": None, "ssl.key.location": None},
        REFUSED,
    ),
    "client certificate of another CA": (
        lambda t: {
            "ssl.certificate.location": str(t.bad / "stranger.cert"),
            "ssl.key.location": str(t.bad / "stranger.key"),
        },
        REFUSED,
    ),
    "expired client certificate": (
        lambda t: {
            "ssl.certificate.location": str(t.bad / "expired-client.cert"),
            "ssl.key.location": str(t.bad / "expired-client.key"),
        },
        f"{EXPIRED} (ours: ",
    ),
    "expired broker certificate": (
        lambda t: {"bootstrap.servers": f"127.0.0.1:{t.ports['expired']}"},
        f"{EXPIRED} (the server's: certificate has expired)",
    ),
    "hostname mismatch": (
        lambda t: {"bootstrap.servers": f"127.0.0.1:{t.ports['elsewhere']}"},
        f"{HOSTNAME} (IP address mismatch",
    ),
}


@pytest.mark.parametrize("case", list(KAFKA_CASES))
def test_publish_names_the_certificate_problem(tls, tls_topic, monkeypatch, case):
    changes, expected = KAFKA_CASES[case]
    # a short message timeout only so the test is quick; the product keeps its 30 s default
    conn = kafka_conn(tls, **changes(tls), **{"message.timeout.ms": 3000})
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", conn)
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    with pytest.raises(DeliveryError) as failure:
        publish(producer, observation("tls", T0), timeout=10)
    assert expected in str(failure.value)
    assert f"Kafka did not confirm delivery to {tls_topic}" in str(failure.value)


def test_probe_task_fails_with_the_cause_in_its_log(
    tls, tls_topic, web, tmp_path, monkeypatch, capfd
):
    conn = kafka_conn(
        tls, **{"ssl.ca.location": str(tls.bad / "other-ca.pem"), "message.timeout.ms": 3000}
    )
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", conn)
    assert site_dag_for(web.url, tmp_path, monkeypatch).test().state == "failed"
    out, err = capfd.readouterr()
    assert "DeliveryError: Kafka did not confirm delivery to" in out + err
    assert UNTRUSTED in out + err


@pytest.mark.parametrize("case", ["wrong CA", "missing client certificate"])
def test_drain_names_the_problem_and_loses_nothing(tls, tls_topic, monkeypatch, case):
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    publish(producer, observation(f"kept-{case[:4]}", T0))
    changes, expected = KAFKA_CASES[case]

    conn = results_connection()
    try:
        migrate(conn)
        monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(tls, **changes(tls)))
        bad = GroupConsumerHook([tls_topic], DRAIN_GROUP).get_consumer()
        try:
            with pytest.raises(ConsumeError, match="reading from Kafka failed") as failure:
                drain(bad, conn, poll_timeout=3.0)
        finally:
            bad.close()
        assert expected in str(failure.value)

        monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(tls))
        good = GroupConsumerHook([tls_topic], DRAIN_GROUP).get_consumer()
        try:
            # still there, stored once: up to 6 s for the handshake and the group, then caught up
            assert drain(good, conn, poll_timeout=1.0, idle_seconds=6.0).inserted == 1
        finally:
            good.close()
    finally:
        conn.close()


def test_missing_or_unusable_files_fail_before_connecting(tls, tls_topic, monkeypatch):
    missing = str(tls.dir / "nope.pem")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(tls, **{"ssl.ca.location": missing})
    )
    with pytest.raises(ConnectionConfigError) as failure:
        ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    assert str(failure.value) == f"sitewatch_kafka: ssl.ca.location {missing} does not exist"

    wrong_password = {
        "ssl.certificate.location": str(tls.bad / "locked.cert"),
        "ssl.key.location": str(tls.bad / "locked.key"),
        "ssl.key.password": "not-" + KEY_PASSWORD,
    }
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_conn(tls, **wrong_password))
    with pytest.raises(ConnectionConfigError, match=r"wrong ssl\.key\.password\?") as failure:
        GroupConsumerHook([tls_topic], DRAIN_GROUP).get_consumer()
    assert KEY_PASSWORD not in str(failure.value)


# --- PostgreSQL with verify-full ------------------------------------------------------------------


def test_postgres_wrong_ca(tls, tls_topic, monkeypatch):
    conn = postgres_conn(tls, sslrootcert=str(tls.bad / "other-ca.pem"))
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES", conn)
    with pytest.raises(StorageError) as failure:
        results_connection()
    text = str(failure.value)
    assert "TLS: server certificate not trusted (wrong CA?)" in text
    assert "certificate verify failed" in text
    assert tls.postgres["password"] not in text


def test_postgres_hostname_mismatch(tls, tls_topic, monkeypatch):
    conn = postgres_conn(tls, hostaddr="127.0.0.1")
    conn = json.dumps({**json.loads(conn), "host": "elsewhere.example"})
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES", conn)
    with pytest.raises(StorageError, match='does not match host name "elsewhere.example"'):
        results_connection()


def test_postgres_expired_server_certificate(tls, tls_topic, monkeypatch):
    admin = psycopg.connect(
        host="127.0.0.1",
        port=tls.postgres["port"],
        user="sitewatch",  # the cluster's superuser: SHOW ssl_cert_file, pg_reload_conf()
        password=(tls.state / "pg-password").read_text().strip(),
        dbname="sitewatch",
        autocommit=True,
    )
    # the server re-reads its certificate files on reload: swap in an expired pair, then back
    served = [
        Path(admin.execute(f"SHOW {s}").fetchone()[0]) for s in ("ssl_cert_file", "ssl_key_file")
    ]
    kept = [path.read_bytes() for path in served]
    try:
        served[0].write_bytes((tls.bad / "expired-server.cert").read_bytes())
        served[1].write_bytes((tls.bad / "expired-server.key").read_bytes())
        admin.execute("SELECT pg_reload_conf()")
        with pytest.raises(StorageError) as failure:
            results_connection()
        assert f"{EXPIRED} (the server's: certificate has expired)" in str(failure.value)
    finally:
        for path, data in zip(served, kept, strict=True):
            path.write_bytes(data)
        admin.execute("SELECT pg_reload_conf()")
        admin.close()


def scram_conn(tls, password: str = SCRAM_PASSWORD) -> str:
    """SASL_SSL with SCRAM-SHA-256: the broker's CA, a username and password, no client cert."""
    extra = {
        "bootstrap.servers": f"127.0.0.1:{tls.ports['scram']}",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": SCRAM_USER,
        "sasl.password": password,
        "ssl.ca.location": str(tls.dir / "ca.pem"),
        "log_level": 0,
    }
    return json.dumps({"conn_type": "kafka", "extra": extra})


def test_sasl_scram_publishes_and_drains(tls, tls_topic, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", scram_conn(tls))
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    sent = observation("scram", T0)
    publish(producer, sent, timeout=30)
    consumer = GroupConsumerHook([tls_topic], f"scram-{uuid.uuid4().hex}").get_consumer()
    try:
        received = None
        deadline = time.monotonic() + 30
        while received is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                received = Observation.from_message(msg.value())
    finally:
        consumer.close()
    assert received == sent


def test_sasl_wrong_password_is_named(tls, tls_topic, monkeypatch):
    conn = json.loads(scram_conn(tls, password="wrong"))
    conn["extra"]["message.timeout.ms"] = 5000  # the rejection comes at once, not in 30 s
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", json.dumps(conn))
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    with pytest.raises(DeliveryError) as failure:
        publish(producer, observation("scram", T0))
    assert "SASL: the broker rejected the username or password" in str(failure.value)
