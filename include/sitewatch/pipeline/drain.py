"""Draining the topic into PostgreSQL: batches in, one transaction each, offsets committed after.

Exactly-once storage comes from two rules together. Offsets are committed only after the batch's
transaction committed, so a crash anywhere redelivers the batch rather than losing it; and the
table is unique on ``(site, scheduled_at, attempt)``, so a redelivered batch adds no second row.
A message that is not a valid observation is stored in ``site_checks_rejected`` in the same
transaction; it never stops the drain.

Decoding is Python work and storing is mostly the server's, so they overlap: each message is
decoded as the batch's COPY streams, and PostgreSQL stores the rows already sent, on the other
core, while the rest are decoded (see ``sitewatch.storage.checks.store_rows``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

from sitewatch.errors import ConsumeError, MessageError
from sitewatch.observation import MAX_MESSAGE_BYTES, Observation, fast_row
from sitewatch.storage.checks import Rejected, observation_rows, store_rows

log = logging.getLogger(__name__)


@dataclass
class DrainResult:
    """What one drain stored: batches, rows inserted, duplicates skipped, messages rejected."""

    batches: int = 0
    messages: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0


def drain(
    consumer, conn, *, batch_size: int = 5000, poll_timeout: float = 2.0, max_seconds: float = 300.0
) -> DrainResult:
    """Consume until the topic is caught up (an empty poll) or ``max_seconds`` passed.

    consumer: a subscribed ``confluent_kafka.Consumer`` with auto-commit off.
    conn: a psycopg connection to the results database.
    Each batch (up to ``batch_size`` messages) is stored in one transaction, then its offsets are
    committed synchronously. Raises ConsumeError when the broker returns an error, or when an
    empty poll came with a recognised connection failure (a TLS or SASL problem recorded by the
    consumer's ``errors``, see sitewatch.airflow.hooks) rather than a caught-up topic; lets
    StorageError through. In every case the batch's offsets stay uncommitted. Messages are decoded
    while the batch's COPY streams (see the module docstring).
    """
    result = DrainResult()
    deadline = time.monotonic() + max_seconds
    errors = getattr(consumer, "errors", None)
    while time.monotonic() < deadline:
        messages = consumer.consume(batch_size, poll_timeout)
        if not messages:
            why = errors.explain(recognised_only=True) if errors is not None else ""
            if why:
                raise ConsumeError(f"reading from Kafka failed: {why}")
            break
        if errors is not None:
            errors.clear()  # what failed before this batch arrived is over
        rejected: list[Rejected] = []
        outcome = store_rows(conn, decode(messages, rejected), rejected)
        offsets = _next_offsets(messages)
        if offsets:  # none when the batch held only events (partition EOF)
            consumer.commit(offsets=offsets, asynchronous=False)
        result.batches += 1
        result.messages += len(messages)
        result.inserted += outcome.inserted
        result.duplicates += outcome.duplicates
        result.rejected += outcome.rejected
        log.info(
            "batch=%s messages=%s inserted=%s duplicates=%s rejected=%s",
            result.batches,
            len(messages),
            outcome.inserted,
            outcome.duplicates,
            outcome.rejected,
        )
    return result


def _next_offsets(messages) -> list[TopicPartition]:
    """The offsets to commit once ``messages`` are stored: past the last one of each partition.

    Explicit, so that exactly the stored batch is committed, whatever the consumer fetched since.
    """
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        if msg.error() is None:
            key = (msg.topic(), msg.partition())
            last[key] = max(last.get(key, -1), msg.offset())
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in last.items()]


def decode(messages, rejected: list[Rejected]) -> Iterator[tuple]:
    """Yield the ``site_checks`` rows of consumed messages; append the rejected ones to
    ``rejected``, with the reason.

    Rows are in ``sitewatch.observation.FIELDS`` order, for ``store_rows``: nearly all come
    straight from ``fast_row``; a message it declines goes through ``Observation.from_message``,
    which accepts it or names what is wrong. Raises ConsumeError for a broker-level error; a
    partition EOF event is skipped.
    """
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise ConsumeError(f"reading {msg.topic()} failed: {err}")
        value = msg.value()
        row = fast_row(value) if value is not None and len(value) <= MAX_MESSAGE_BYTES else None
        if row is not None:
            yield row
            continue
        try:
            observation = Observation.from_message(value)
        except MessageError as exc:
            rejected.append(
                Rejected(
                    raw=value,
                    key=msg.key(),
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                    reason=exc.reason,
                )
            )
        else:
            yield from observation_rows([observation])
