"""The vertical slice: both connections reach the real local Kafka and PostgreSQL."""

import uuid

from airflow.providers.postgres.hooks.postgres import PostgresHook

from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook


def test_kafka_connection_round_trip(new_topic):
    topic = new_topic()
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    token = uuid.uuid4().hex.encode()
    delivered = []
    producer.produce(
        topic, key=b"wiring", value=token, on_delivery=lambda e, m: delivered.append(e)
    )
    assert producer.flush(30) == 0
    assert delivered == [None]

    consumer = GroupConsumerHook([topic], group_id=f"wiring-{token.decode()}").get_consumer()
    try:
        seen = []
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                seen.append(msg.value())
                if msg.value() == token:
                    break
        assert token in seen
    finally:
        consumer.close()


def test_postgres_connection_round_trip():
    hook = PostgresHook(postgres_conn_id="sitewatch_postgres")
    token = uuid.uuid4().hex
    with hook.get_conn() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE wiring (token text)")
        cur.execute("INSERT INTO wiring VALUES (%s)", (token,))
        cur.execute("SELECT token, current_database() FROM wiring")
        assert cur.fetchone() == (token, hook.get_connection("sitewatch_postgres").schema)
