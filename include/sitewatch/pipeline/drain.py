"""Draining the topic into PostgreSQL: batches in, one transaction each, offsets committed after.

Exactly-once storage comes from two rules together. Offsets are committed only after the batch's
transaction committed, so a crash anywhere redelivers the batch rather than losing it; and the
table is unique on ``(site, scheduled_at, location, attempt)`` (``storage.checks.KEY``), so a
redelivered batch adds no second row.
A message that is not a valid observation is stored in ``site_checks_rejected`` in the same
transaction; it never stops the drain. So is a valid one whose ``scheduled_at`` lies outside the
window the drain stores (``Window``: retention would drop it at once, or it is from the future and
would make partitions retention never drops), and one whose row PostgreSQL refuses
(``sitewatch.storage.checks.store_rows`` isolates it from the rest of its batch).

Decoding is Python work and storing is mostly the server's, so they overlap: each message is
decoded as the batch's COPY streams, and PostgreSQL stores the rows already sent, on the other
core, while the rest are decoded (see ``sitewatch.storage.checks.store_rows``).

Since the drain sees every observation exactly once, it is also where a verdict that needs every
check can be judged without a cost per check elsewhere: ``on_stored`` hands each stored batch to
such a judge (``sitewatch.judge.session.Judge``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaError, TopicPartition

from sitewatch.config.maintenance import maintenance_at
from sitewatch.errors import ConsumeError, MessageError
from sitewatch.observation import MAX_MESSAGE_BYTES, POSITION, Observation, fast_row
from sitewatch.pipeline.settings import DrainSettings
from sitewatch.storage.checks import Refuse, Rejected, observation_rows, store_rows
from sitewatch.storage.mutes import Mute, mutes_overlapping
from sitewatch.storage.retention import RETENTION_VAR, RetentionSettings

log = logging.getLogger(__name__)

AHEAD = timedelta(days=1)
"""How far past the drain's clock a check may be scheduled: clocks differ by seconds, not days."""
_SITE, _SCHEDULED, _MAINTENANCE = (POSITION[n] for n in ("site", "scheduled_at", "maintenance"))

OnStored = Callable[[Sequence[tuple]], None]
"""``on_stored(rows)``: told the rows of a batch once it is stored and its offsets committed."""


@dataclass(frozen=True)
class Window:
    """The ``scheduled_at`` of the checks the drain stores: from ``earliest`` (``now`` minus the
    retention) to ``latest`` (``now`` plus ``AHEAD``), both included.

    Checked in the drain, not in ``sitewatch.observation``, because it needs a clock and the
    retention setting; decoding stays a pure function of the message.
    """

    earliest: datetime
    latest: datetime
    retention_days: int

    @classmethod
    def at(cls, now: datetime, retention_days: int) -> Window:
        return cls(now - timedelta(days=retention_days), now + AHEAD, retention_days)

    def problem(self, scheduled_at: datetime) -> str:
        """Why ``scheduled_at``, which lies outside the window, is rejected."""
        when = scheduled_at.isoformat()
        if scheduled_at < self.earliest:
            return (
                f"scheduled_at {when} is older than the retention of {self.retention_days} days"
                f" ({RETENTION_VAR})"
            )
        now = (self.latest - AHEAD).isoformat(timespec="seconds")
        return f"scheduled_at {when} is more than a day ahead of the drain's clock ({now})"


@dataclass
class DrainResult:
    """What one drain stored: batches, rows inserted, duplicates skipped, messages rejected;
    and why it ended: ``quiet`` (no message for ``idle_seconds``), ``deadline`` (``max_seconds``
    passed) or ``stopped`` (``stop`` said so)."""

    batches: int = 0
    messages: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    ended: str = ""


def drain(
    consumer,
    conn,
    *,
    batch_size: int = DrainSettings.batch_size,
    poll_timeout: float = DrainSettings.poll_seconds,
    max_seconds: float = DrainSettings.max_seconds,
    idle_seconds: float = 0.0,
    retention_days: int | None = None,
    on_stored: OnStored | None = None,
    on_caught_up: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> DrainResult:
    """Consume until no message came for ``idle_seconds`` (0: the first empty poll, the topic is
    caught up), ``max_seconds`` passed, or ``stop()`` returns true; ``DrainResult.ended`` says
    which.

    consumer: a subscribed ``confluent_kafka.Consumer`` with auto-commit off.
    conn: a psycopg connection to the results database.
    retention_days: the raw retention, which bounds the ``Window`` of ``scheduled_at`` stored;
    None reads ``SITEWATCH_RETENTION_DAYS`` as the maintenance DAG does (SettingError if unusable).
    Each batch (up to ``batch_size`` messages) is stored in one transaction, then its offsets are
    committed synchronously. A message outside the window, or whose row PostgreSQL refuses, is
    rejected (stored in ``site_checks_rejected`` with the reason) and the batch goes on. A check
    scheduled within an ad-hoc maintenance window (``site_mutes``, one query a batch) is stored
    marked ``maintenance``.
    on_stored: called with each batch's rows (``COLUMNS`` order) after its offsets were committed:
    the rows ``site_checks`` holds, duplicates of rows stored before included (a redelivered batch
    is told again, so its judge must be idempotent), refused rows left out. After the offset
    commit rather than before, so that the hook's time and failures (webhooks that time out) can
    never hold back or fail the commit of a stored batch; the price is that a crash between the
    two loses the hook's call for that batch, never a row. Whatever it raises is logged and the
    drain goes on. Without it the batch's rows are not collected at all.
    on_caught_up: called after a poll that returned less than a full batch (the drain has read
    what there was), for work that must not run on a lagging drain; logged and ignored when it
    raises, like ``on_stored``.
    stop: asked before each read (at least every ``poll_timeout``), so a drain told to stop (the
    task's SIGTERM) ends after the batch in hand is stored and committed.
    Raises ConsumeError when the broker returns an error, or when an empty poll came with a
    recognised connection failure (a TLS or SASL problem recorded by the consumer's ``errors``,
    see sitewatch.airflow.hooks) rather than a caught-up topic; lets StorageError through (the
    database failed, not a row). In every case the batch's offsets stay uncommitted. Messages
    are decoded while the batch's COPY streams (see the module docstring).
    """
    if retention_days is None:
        retention_days = RetentionSettings.from_env().raw_days
    result = DrainResult()
    deadline = time.monotonic() + max_seconds
    errors = getattr(consumer, "errors", None)
    last_message = time.monotonic()
    while True:
        if stop is not None and stop():
            result.ended = "stopped"
            break
        if time.monotonic() >= deadline:
            result.ended = "deadline"
            break
        messages = consumer.consume(batch_size, poll_timeout)
        if not messages:
            why = errors.explain(recognised_only=True) if errors is not None else ""
            if why:
                raise ConsumeError(f"reading from Kafka failed: {why}")
            if on_caught_up is not None:
                _call(on_caught_up, "on_caught_up")
            if time.monotonic() - last_message >= idle_seconds:
                result.ended = "quiet"
                break
            continue
        last_message = time.monotonic()
        if errors is not None:
            errors.clear()  # what failed before this batch arrived is over
        rejected: list[Rejected] = []
        sources: list = []  # the message of each row, for a row PostgreSQL refuses
        window = Window.at(datetime.now(UTC), retention_days)
        rows = decode(messages, rejected, window, sources)
        mutes = mutes_overlapping(conn, None, window.earliest, window.latest)
        if mutes:
            rows = _muting(rows, mutes)
        kept: list[tuple] = []
        refused: list[int] = []
        if on_stored is not None:
            rows = _keeping(rows, kept.append)
        outcome = store_rows(conn, rows, rejected, refuse=_refuser(sources, refused.append))
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
        if on_stored is not None and kept:
            _tell(on_stored, _stored(kept, refused))
        if on_caught_up is not None and len(messages) < batch_size:  # after it is stored
            _call(on_caught_up, "on_caught_up")
    return result


def _muting(rows: Iterator[tuple], mutes: dict[str, list[Mute]]) -> Iterator[tuple]:
    """``rows``, each of a check scheduled within an ad-hoc maintenance window of its site (one of
    ``mutes``) marked ``maintenance``, as ``config.maintenance.maintenance_at`` decides. The task
    marks those of the sites file's windows (the same function); a mute lives in the database,
    which only the drain reads."""
    for row in rows:
        site, at = row[_SITE], row[_SCHEDULED]
        if not row[_MAINTENANCE] and maintenance_at((), mutes.get(site, ()), at) is not None:
            row = (*row[:_MAINTENANCE], True, *row[_MAINTENANCE + 1 :])
        yield row


def _keeping(rows: Iterator[tuple], keep: Callable[[tuple], None]) -> Iterator[tuple]:
    """``rows``, each passed to ``keep`` on its way to the COPY."""
    for row in rows:
        keep(row)
        yield row


def _stored(rows: list[tuple], refused: list[int]) -> list[tuple]:
    """``rows`` without those at the ``refused`` positions (which PostgreSQL did not store)."""
    if not refused:
        return rows
    skip = set(refused)
    return [row for position, row in enumerate(rows) if position not in skip]


def _call(hook: Callable[[], None], name: str) -> None:
    try:
        hook()
    except Exception:
        log.exception("drain: %s failed; the drain goes on", name)


def _tell(on_stored: OnStored, rows: list[tuple]) -> None:
    try:
        on_stored(rows)
    except Exception:  # a judge's failure must never stop the storing of checks
        log.exception("drain: on_stored failed rows=%s; the drain goes on", len(rows))


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


def decode(messages, rejected: list[Rejected], window: Window, sources: list) -> Iterator[tuple]:
    """Yield the ``site_checks`` rows of consumed messages; append the rejected ones to
    ``rejected``, with the reason, and the message of each row yielded to ``sources``.

    Rows are in ``sitewatch.observation.FIELDS`` order, for ``store_rows``: nearly all come
    straight from ``fast_row``; a message it declines goes through ``Observation.from_message``,
    which accepts it or names what is wrong. A row scheduled outside ``window`` is rejected.
    Raises ConsumeError for a broker-level error; a partition EOF event is skipped.
    """
    earliest, latest, scheduled, source = window.earliest, window.latest, _SCHEDULED, sources.append
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise ConsumeError(f"reading {msg.topic()} failed: {err}")
        value = msg.value()
        row = fast_row(value) if value is not None and len(value) <= MAX_MESSAGE_BYTES else None
        if row is None:
            try:
                row = observation_rows([Observation.from_message(value)])[0]
            except MessageError as exc:
                rejected.append(_rejection(msg, exc.reason))
                continue
        if not earliest <= row[scheduled] <= latest:
            rejected.append(_rejection(msg, window.problem(row[scheduled])))
            continue
        source(msg)
        yield row


def _rejection(msg, reason: str) -> Rejected:
    return Rejected(
        raw=msg.value(),
        key=msg.key(),
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        reason=reason,
    )


def _refuser(sources: list, note: Callable[[int], None]) -> Refuse:
    """``store_rows``'s ``refuse`` for the rows ``decode`` yielded from ``sources``: logs each and
    passes its position to ``note``."""

    def refuse(position: int, reason: str) -> Rejected:
        note(position)
        msg = sources[position]
        log.warning(
            "drain: refused topic=%s partition=%s offset=%s reason=%s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            reason,
        )
        return _rejection(msg, reason)

    return refuse
