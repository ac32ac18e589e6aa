"""Malformed and hostile messages on the topic: each is stored (as data or as a rejected message),
none stops the drain; nothing is lost and nothing is stored twice.

Runs against the real local Kafka and PostgreSQL (``make services``), on a fresh topic and schema.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import report
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from sitewatch.airflow.hooks import GroupConsumerHook, ObservationProducerHook
from sitewatch.names import DRAIN_GROUP
from sitewatch.observation import MAX_TEXT, Observation
from sitewatch.pipeline.drain import drain
from sitewatch.storage.partitions import MAX_NEW_PARTITIONS
from sitewatch.storage.schema import migrate
from tests.builders import observation
from tests.integration.conftest import (  # noqa: F401 - fixtures this module uses
    pg_conn,
    pg_connect,
    pg_dsn,
    pg_schema,
)

pytestmark = pytest.mark.services

NOW = datetime.now(UTC)
T0 = (NOW - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)  # in the drain's window
BIG = 10 * 2**20  # the 10 MB value; the broker's default cap (~1 MB) is raised for this topic
INJECTION = "'); DROP TABLE site_checks; --"
RANDOM = random.Random(14)
RANDOM_NAME = "".join(RANDOM.choices(string.ascii_letters + string.punctuation, k=MAX_TEXT))
# A URL that decoding accepts but an index on url cannot hold (random: compression cannot help).
RANDOM_URL = "https://example.com/" + "".join(RANDOM.choices(string.ascii_letters, k=4000))


class _BigMessageProducerHook(ObservationProducerHook):
    def _get_client(self, config):
        return super()._get_client({**config, "message.max.bytes": BIG + 2**20})


def _observation(i: int) -> Observation:
    """Good observation ``i``: of one of five sites, each of its own run and URL."""
    at = T0 + timedelta(minutes=i)
    return observation(
        f"good{i % 5}", at, checked_at=T0, url=f"https://example.com/{i}", response_time_ms=10.0 + i
    )


def _doc(i: int, **changes) -> bytes:
    """A v1 message built by hand, so that any field can hold anything JSON can."""
    doc = json.loads(_observation(i).to_message())
    doc.update(changes)
    return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


INJECTED_URL = f"https://example.com/{INJECTION}"


def _ago(delta: timedelta, offset_hours: int = 0) -> str:
    """``NOW - delta`` as ISO 8601 text with a UTC offset of ``offset_hours``."""
    return (NOW - delta).astimezone(timezone(timedelta(hours=offset_hours))).isoformat()


def _hostile() -> tuple[list[tuple[str, bytes | None]], list[tuple[str, bytes]]]:
    """(rejected cases, stored cases): each a (label, raw message) pair."""
    valid = _doc(900)
    rejected = [
        ("binary junk", bytes(range(256)) * 16),
        ("empty value", b""),
        ("null value (tombstone)", None),
        ("10 MB value", b'{"v": 1, "site": "' + b"x" * BIG + b'"}'),
        ("float 1e308", _doc(901, response_time_ms=1e308)),
        ("int 2**64", _doc(902, status_code=2**64)),
        ("attempt -1", _doc(903, attempt=-1)),
        ("NaN literal", _doc(904, response_time_ms=float("nan"))),
        ("Infinity literal", _doc(905, dns_ms=float("inf"))),
        ("-Infinity literal", _doc(906, ttfb_ms=float("-inf"))),
        ("5000-digit integer", valid.replace(b'"attempt": 1', b'"attempt": ' + b"9" * 5000)),
        ("up as a string", _doc(907, up="yes")),
        ("site as a number", _doc(908, site=5)),
        ("attempt as a string", _doc(909, attempt="1")),
        ("site as an object", _doc(910, site={"name": "x"})),
        ("url as a list", _doc(911, url=["http://a/"])),
        ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
        ("NUL in site", _doc(912, site="bad\x00site")),
        ("NUL in error_detail", _doc(913, error_detail="a\x00b")),
        ("site name over 4096 characters", _doc(914, site="s" * (MAX_TEXT + 1))),
        ("site name of 4096 characters", _doc(952, site="n" * MAX_TEXT)),
        ("site of 4096 random characters", _doc(919, site=RANDOM_NAME)),
        ("SQL injection in site", _doc(950, site=INJECTION)),
        ("javascript: url", _doc(920, url="javascript:alert(document.cookie)")),
        ("data: final_url", _doc(921, final_url="data:text/html,<script>alert(1)</script>")),
        ("scheduled_at in year 1", _doc(922, scheduled_at="0001-01-01T00:00:00+00:00")),
        ("scheduled_at in year 9999", _doc(954, scheduled_at="9999-12-31T23:59:59+00:00")),
        ("scheduled_at past the retention", _doc(923, scheduled_at=_ago(timedelta(days=91)))),
        ("scheduled_at two days ahead", _doc(924, scheduled_at=_ago(timedelta(days=-2)))),
        ("url an index cannot hold (PostgreSQL refuses the row)", _doc(925, url=RANDOM_URL)),
        ("unknown extra field", valid[:-1] + b',"extra":true}'),
        (
            "unknown field with a lone surrogate",
            valid[:-1] + '," \udc80":1}'.encode("utf-8", "surrogatepass"),
        ),
        ("checked_at before year 1 in UTC", _doc(915, checked_at="0001-01-01T00:00:00+14:00")),
        ("checked_at without offset", _doc(916, checked_at="2026-01-01T00:00:00")),
        ("not UTF-8", valid.replace(b'"good0"', b'"\xff\xfe"')),
        ("JSON array", b"[1, 2, 3]"),
        ("version 2", _doc(917, v=2)),
        ("injection as the version", _doc(918, v=INJECTION)),
    ]
    stored = [
        (
            "SQL injection in url and error_detail",
            _doc(951, url=INJECTED_URL, error_detail=INJECTION),
        ),
        ("lone surrogate in error_detail", _doc(953, error_detail="half \ud800 pair")),
        ("duplicate JSON keys", valid[:-1] + b',"site":"dup-key"}'),
        ("site name of 63 characters", _doc(955, site="n" * 63)),
        ("scheduled_at a day ago, in UTC+14", _doc(956, scheduled_at=_ago(timedelta(days=1), 14))),
    ]
    return rejected, stored


def _make_big_topic(new_topic) -> str:
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    topic = new_topic()
    admin = KafkaBaseHook(kafka_config_id="sitewatch_kafka").get_conn
    entry = ConfigEntry(
        "max.message.bytes", str(BIG + 2**20), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    return topic


def _produce(topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = _BigMessageProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    errors = []
    for key, value in messages:
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, msg: errors.append(err)
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert [e for e in errors if e is not None] == []


def _drain(topic: str, conn, group: str = DRAIN_GROUP, retention_days: int = 90):
    consumer = GroupConsumerHook([topic], group).get_consumer()
    try:
        return drain(consumer, conn, poll_timeout=5.0, retention_days=retention_days)
    finally:
        consumer.close()


def _query(conn, sql: str, *args) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    conn.commit()
    return rows


def test_hostile_messages_are_stored_safely_and_never_stop_the_drain(
    new_topic,
    pg_conn,  # noqa: F811 - the imported fixture
):
    migrate(pg_conn)
    # An index an operator might add: a row it cannot hold must be refused alone.
    with pg_conn.cursor() as cur:
        cur.execute("CREATE INDEX site_checks_url ON site_checks (url)")
    pg_conn.commit()
    topic = _make_big_topic(new_topic)
    rejected, stored = _hostile()
    good = [_observation(i) for i in range(40)]
    # Good observations before, between and after the hostile ones: the drain must get past all.
    messages = [(o.site.encode(), o.to_message()) for o in good[:20]]
    messages += [(label.encode(), raw) for label, raw in rejected + stored]
    messages += [(INJECTION.encode(), None)]  # a hostile key too, on a tombstone
    messages += [(o.site.encode(), o.to_message()) for o in good[20:]]
    produced = len(messages)
    _produce(topic, messages)

    started = time.monotonic()
    result = _drain(topic, pg_conn)
    seconds = time.monotonic() - started

    expected_rows, expected_rejects = len(good) + len(stored), len(rejected) + 1
    checks = _query(pg_conn, "SELECT count(*) FROM site_checks")[0][0]
    rejects = _query(pg_conn, "SELECT count(*) FROM site_checks_rejected")[0][0]
    assert (result.messages, result.inserted, result.rejected) == (
        produced,
        expected_rows,
        expected_rejects,
    )
    assert (checks, rejects) == (expected_rows, expected_rejects)

    # Text is data: the injection round-trips verbatim and the table it names is still there.
    assert _query(pg_conn, "SELECT to_regclass('site_checks') IS NOT NULL")[0][0] is True
    assert _query(
        pg_conn, "SELECT url, error_detail FROM site_checks WHERE url = %s", INJECTED_URL
    ) == [(INJECTED_URL, INJECTION)]
    assert _query(
        pg_conn,
        "SELECT error_detail FROM site_checks WHERE error_detail LIKE 'half %%'",
    ) == [("half ? pair",)]
    raws = {
        bytes(key): (None if raw is None else bytes(raw), reason)
        for key, raw, reason in _query(pg_conn, "SELECT key, raw, reason FROM site_checks_rejected")
    }
    for label, raw in rejected:
        assert raws[label.encode()][0] == raw, label  # raw bytes kept exactly
    assert raws[INJECTION.encode()] == (None, "empty message (null value)")
    reasons = {label: raws[label.encode()][1] for label, _ in rejected}
    assert reasons["nested 100,000 deep"] == "not an observation: JSON nested too deeply"
    assert reasons["checked_at before year 1 in UTC"] == (
        "checked_at: timestamp '0001-01-01T00:00:00+14:00' is out of range"
    )
    assert reasons["unknown extra field"] == "unknown fields: extra"
    assert reasons["site of 4096 random characters"].startswith("site: invalid name")
    assert reasons["SQL injection in site"].startswith("site: invalid name")
    assert (
        reasons["javascript: url"]
        == "url: not an http(s), tcp, tls or dns URL: 'javascript:alert(document.cookie)'"
    )
    assert reasons["data: final_url"].startswith("final_url: not an http(s) URL")
    assert reasons["scheduled_at in year 1"].startswith(
        "scheduled_at 0001-01-01T00:00:00+00:00 is older than the retention of 90 days"
    )
    assert "is more than a day ahead" in reasons["scheduled_at in year 9999"]
    assert "older than the retention" in reasons["scheduled_at past the retention"]
    assert "is more than a day ahead" in reasons["scheduled_at two days ahead"]
    assert reasons["url an index cannot hold (PostgreSQL refuses the row)"].startswith(
        "PostgreSQL refused the row (54000): index row size"
    )

    # A replay of the whole topic (a new consumer group) stores no second copy of anything.
    replay = _drain(topic, pg_conn, group=f"replay-{uuid.uuid4().hex}")
    assert (replay.messages, replay.inserted, replay.rejected) == (produced, 0, 0)
    after = (
        _query(pg_conn, "SELECT count(*) FROM site_checks")[0][0],
        _query(pg_conn, "SELECT count(*) FROM site_checks_rejected")[0][0],
    )
    assert after == (checks, rejects)
    lost = produced - (checks + rejects)
    assert lost == 0

    report.record(
        "hostile_messages",
        {
            "produced": produced,
            "stored_rows": checks,
            "rejected_rows": rejects,
            "lost": lost,
            "duplicated": (after[0] - checks) + (after[1] - rejects) + replay.inserted,
            "largest_message_bytes": max(len(raw or b"") for _, raw in messages),
            "drain_seconds": round(seconds, 2),
            "rejected_cases": {label: reasons[label] for label, _ in rejected},
            "stored_cases": [label for label, _ in stored],
        },
    )


def _partitions(conn) -> int:
    query = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'site_checks'::regclass"
    return _query(conn, query)[0][0]


def test_a_flood_of_distinct_days_makes_few_partitions_and_never_stops_the_drain(
    new_topic,
    pg_conn,  # noqa: F811 - the imported fixture
):
    """5,000 checks, each on a day of its own, all inside a retention raised to 100 years: the
    drain made a partition for every day (10,008 from two batches, "out of shared memory").
    Now each batch makes at most MAX_NEW_PARTITIONS; the other days' rows are rejected."""
    migrate(pg_conn)
    topic = new_topic()
    days = 5000
    flood = [
        (b"flood", _doc(i, site="flood", scheduled_at=_ago(timedelta(days=1 + i))))
        for i in range(days)
    ]
    _produce(topic, flood)
    before = _partitions(pg_conn)

    started = time.monotonic()
    result = _drain(topic, pg_conn, retention_days=36_500)
    seconds = time.monotonic() - started

    made = _partitions(pg_conn) - before
    rejects = _query(pg_conn, "SELECT count(*) FROM site_checks_rejected")[0][0]
    assert made <= MAX_NEW_PARTITIONS * result.batches
    assert (result.messages, result.inserted, result.rejected) == (days, made, days - made)
    assert rejects == days - made  # never lost: every other day's check is kept, with the reason
    report.record(
        "hostile_partition_flood",
        {
            "produced": days,
            "batches": result.batches,
            "partitions_made": made,
            "stored_rows": result.inserted,
            "rejected_rows": rejects,
            "drain_seconds": round(seconds, 2),
        },
    )
