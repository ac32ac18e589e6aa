"""One-shot setup of the docker-compose stack, run by ``airflow-init`` after ``airflow db migrate``.

1. Both sitewatch connections resolve, with the right type (and the least-privilege results
   connections, ``sitewatch_postgres_drain``/``_alerting``/``_reader``, when they are set).
   They are ``AIRFLOW_CONN_*`` variables set for every Airflow container (docker-compose.yaml;
   .env with docker-compose.aiven.yaml), so each component reads the same definition and
   nothing is written to the metadata database;
   this step turns a typo there into one clear line instead of failing tasks later.
2. The topic exists: created with ``SITEWATCH_TOPIC_PARTITIONS`` partitions (default 3) and the
   broker's default replication when missing, left as it is when present.
3. With ``SITEWATCH_ADMIN_PASSWORD`` set, the UI user gets that password in the simple auth
   manager's passwords file; without it the API server generates one on its first start.

Any failure exits 1 with one line saying what is wrong, so ``docker compose up`` starts no Airflow
component on a broken setup.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from sitewatch.names import (
    KAFKA_CONN_ID,
    POSTGRES_ALERTING_CONN_ID,
    POSTGRES_CONN_ID,
    POSTGRES_DRAIN_CONN_ID,
    POSTGRES_READER_CONN_ID,
    topic,
)

log = logging.getLogger("airflow-init")

EXPECTED_TYPES = {KAFKA_CONN_ID: "kafka", POSTGRES_CONN_ID: "postgres"}
# The least-privilege results connections: checked when set; unset, sitewatch_postgres serves.
OPTIONAL_TYPES = {
    POSTGRES_DRAIN_CONN_ID: "postgres",
    POSTGRES_ALERTING_CONN_ID: "postgres",
    POSTGRES_READER_CONN_ID: "postgres",
}


class InitError(Exception):
    """A setup step failed; the message names the step's subject and the cause."""


def env_name(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def check_connections(get_connection=None) -> None:
    """Resolve every connection of ``EXPECTED_TYPES``, and of ``OPTIONAL_TYPES`` whose variable
    is set, and check its type.

    get_connection: ``conn_id -> Connection`` (default: Airflow's ``BaseHook.get_connection``).
    Raises InitError naming the connection and its variable when one is malformed, missing or of
    the wrong type. Logs where each one points, never its credentials.
    """
    if get_connection is None:
        from airflow.sdk import BaseHook

        get_connection = BaseHook.get_connection
    optional = {c: t for c, t in OPTIONAL_TYPES.items() if os.environ.get(env_name(c))}
    for conn_id, conn_type in {**EXPECTED_TYPES, **optional}.items():
        env = env_name(conn_id)
        raw = os.environ.get(env, "")
        if raw.lstrip().startswith("{"):
            # Airflow reports a malformed JSON value only as "isn't defined"; say what is wrong.
            try:
                json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InitError(f"{env} is not valid JSON: {exc}") from exc
        try:
            conn = get_connection(conn_id)
        except Exception as exc:
            raise InitError(f"connection {conn_id} does not resolve (set {env}): {exc}") from exc
        if conn.conn_type != conn_type:
            raise InitError(
                f"connection {conn_id} ({env}) has conn_type {conn.conn_type!r}, "
                f"expected {conn_type!r}"
            )
        target = conn.extra_dejson.get("bootstrap.servers") if conn_type == "kafka" else conn.host
        log.info("connection=%s type=%s target=%s", conn_id, conn_type, target)


def ensure_topic(admin, name: str, partitions: int, wait: float = 60.0) -> bool:
    """Create topic ``name`` unless it exists; True when this call created it.

    admin: a ``confluent_kafka.admin.AdminClient``. An existing topic is never altered, whatever
    its partition count. Replication is the broker's default (1 on the local broker, the
    service's own on a hosted one). Raises InitError when the broker does not answer within
    ``wait`` seconds or refuses the creation.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            metadata = admin.list_topics(timeout=5)
            if metadata.brokers:
                break
            cause = "no broker in the metadata"
        except KafkaException as exc:
            cause = exc.args[0].str() if exc.args else str(exc)
        if time.monotonic() > deadline:
            raise InitError(f"Kafka did not answer within {wait:.0f}s: {cause}")
        time.sleep(1)
    if name in metadata.topics:
        found = len(metadata.topics[name].partitions)
        log.info("topic=%s partitions=%d exists", name, found)
        return False
    try:
        admin.create_topics([NewTopic(name, partitions)])[name].result(timeout=30)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:  # made meanwhile by someone else
            return False
        raise InitError(f"could not create topic {name}: {error.str()}") from exc
    log.info("topic=%s partitions=%d created", name, partitions)
    return True


def seed_admin_password(path: Path, user: str, password: str) -> None:
    """Set ``user``'s password in the simple auth manager's JSON passwords file.

    Other users' entries are kept. The API server adds (and prints) a generated password only for
    users missing from the file, so a seeded user logs in with exactly this password.
    """
    passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
    passwords[user] = password
    path.write_text(json.dumps(passwords) + "\n")
    path.chmod(0o660)
    log.info("user=%s password set in %s", user, path)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="airflow-init %(levelname)s %(message)s")
    try:
        check_connections()
        from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

        admin = KafkaBaseHook(kafka_config_id=KAFKA_CONN_ID).get_conn
        ensure_topic(admin, topic(), int(os.environ.get("SITEWATCH_TOPIC_PARTITIONS") or 3))
        password = os.environ.get("SITEWATCH_ADMIN_PASSWORD")
        if password:
            from airflow.configuration import conf

            path = Path(conf.get("core", "simple_auth_manager_passwords_file"))
            seed_admin_password(path, os.environ.get("SITEWATCH_ADMIN_USER") or "admin", password)
    except InitError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
