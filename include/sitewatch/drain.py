"""Draining the topic into PostgreSQL: batches in, one transaction each, offsets committed after.

Exactly-once storage comes from two rules together. Offsets are committed only after the batch's
transaction committed, so a crash anywhere redelivers the batch rather than losing it; and the
table is unique on ``(site, scheduled_at, attempt)``, so a redelivered batch adds no second row.
A message that is not a valid observation is stored in ``site_checks_rejected`` in the same
transaction; it never stops the drain.

Consuming and decoding are Python work and storing is mostly the server's, so they overlap: while
one batch is stored (in a helper thread; psycopg waits on the socket without the GIL), the next is
consumed and decoded. At most one batch is in flight, and its offsets are committed before the
next is submitted, so offsets still follow the database and a failure loses nothing.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

from sitewatch.errors import ConsumeError, MessageError
from sitewatch.observation import Observation
from sitewatch.storage import Rejected, store_batch

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
    consumer's ``errors``, see sitewatch.kafka) rather than a caught-up topic; lets StorageError
    through. In every case the batch's offsets stay uncommitted. The next batch is consumed and
    decoded while one is stored (see the module docstring).
    """
    result = DrainResult()
    deadline = time.monotonic() + max_seconds
    errors = getattr(consumer, "errors", None)
    in_flight: tuple[Future, int, list[TopicPartition]] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sitewatch-store") as storer:
        while time.monotonic() < deadline:
            messages = consumer.consume(batch_size, poll_timeout)
            if not messages:
                why = errors.explain(recognised_only=True) if errors is not None else ""
                if why:
                    if in_flight is not None:  # stored before the failure: keep its offsets
                        _commit(consumer, result, *in_flight)
                    raise ConsumeError(f"reading from Kafka failed: {why}")
                break
            if errors is not None:
                errors.clear()  # what failed before this batch arrived is over
            observations, rejected = decode_batch(messages)
            if in_flight is not None:
                _commit(consumer, result, *in_flight)
            future = storer.submit(store_batch, conn, observations, rejected)
            in_flight = (future, len(messages), _next_offsets(messages))
        if in_flight is not None:
            _commit(consumer, result, *in_flight)
    return result


def _commit(consumer, result: DrainResult, stored: Future, count: int, offsets: list) -> None:
    """Wait for a batch's transaction, then commit its offsets and count it."""
    outcome = stored.result()  # re-raises the StorageError of a failed batch
    if offsets:  # none when the batch held only events (partition EOF)
        consumer.commit(offsets=offsets, asynchronous=False)
    result.batches += 1
    result.messages += count
    result.inserted += outcome.inserted
    result.duplicates += outcome.duplicates
    result.rejected += outcome.rejected
    log.info(
        "batch=%s messages=%s inserted=%s duplicates=%s rejected=%s",
        result.batches,
        count,
        outcome.inserted,
        outcome.duplicates,
        outcome.rejected,
    )


def _next_offsets(messages) -> list[TopicPartition]:
    """The offsets to commit once ``messages`` are stored: past the last one of each partition.

    Explicit, because by then the consumer's position is already past the next batch.
    """
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        if msg.error() is None:
            key = (msg.topic(), msg.partition())
            last[key] = max(last.get(key, -1), msg.offset())
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in last.items()]


def decode_batch(messages) -> tuple[list[Observation], list[Rejected]]:
    """Split consumed messages into valid observations and rejected ones (with the reason).

    Raises ConsumeError for a broker-level error; a partition EOF event is skipped.
    """
    observations, rejected = [], []
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise ConsumeError(f"reading {msg.topic()} failed: {err}")
        try:
            observations.append(Observation.from_message(msg.value()))
        except MessageError as exc:
            rejected.append(
                Rejected(
                    raw=msg.value(),
                    key=msg.key(),
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                    reason=exc.reason,
                )
            )
    return observations, rejected
