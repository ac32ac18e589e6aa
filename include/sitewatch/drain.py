"""Draining the topic into PostgreSQL: batches in, one transaction each, offsets committed after.

Exactly-once storage comes from two rules together. Offsets are committed only after the batch's
transaction committed, so a crash anywhere redelivers the batch rather than losing it; and the
table is unique on ``(site, scheduled_at, attempt)``, so a redelivered batch adds no second row.
A message that is not a valid observation is stored in ``site_checks_rejected`` in the same
transaction; it never stops the drain.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError

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
    committed synchronously. Raises ConsumeError when the broker returns an error, and lets
    StorageError through; in both cases the batch's offsets stay uncommitted.
    """
    result = DrainResult()
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        messages = consumer.consume(batch_size, poll_timeout)
        if not messages:
            break
        observations, rejected = decode_batch(messages)
        stored = store_batch(conn, observations, rejected)
        consumer.commit(asynchronous=False)
        result.batches += 1
        result.messages += len(messages)
        result.inserted += stored.inserted
        result.duplicates += stored.duplicates
        result.rejected += stored.rejected
        log.info(
            "batch=%s messages=%s inserted=%s duplicates=%s rejected=%s",
            result.batches,
            len(messages),
            stored.inserted,
            stored.duplicates,
            stored.rejected,
        )
    return result


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
