"""The drain group's consumer lag on the observations topic, per partition (issue 18).

The metrics endpoint reads it on every scrape (``sitewatch_kafka_consumer_lag_messages``,
``sitewatch_kafka_up``), so a read must be cheap, bounded and harmless: it keeps one consumer
between scrapes (a new one would pay a new connection, and a TLS handshake, each time), it is
bounded by its timeout however dead the broker is, and it reads the group's committed offsets
without ever joining the group, so the drain's offsets and partitions stay the drain's.

Kafka trouble is a value here (``KafkaLag.error``), not an exception: a scrape must still show
everything else, with ``sitewatch_kafka_up`` 0.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


@dataclass(frozen=True)
class KafkaLag:
    """What one read of the lag found.

    topic, group: what was read. partitions: ``{partition: lag in messages}`` (the partition's
    end offset less the group's committed offset; from the partition's start when the group
    committed nothing there). error: why it could not be read (None when it was), in which case
    partitions is empty. committed: ``{partition: the group's committed offset}`` as the broker
    gave it (-1: none), for telling a drain that moves from one that does not
    (``sitewatch.judge.watch``); left out of comparisons, which are about the lag.
    """

    topic: str
    group: str
    partitions: Mapping[int, int]
    error: str | None = None
    committed: Mapping[int, int] = field(default_factory=dict, compare=False)


class _Failed(Exception):
    """A read failed for the reason given (no KafkaException to carry it)."""


class _Missing(Exception):
    """The broker says the topic does not exist."""


# Answers that mean "ask again shortly": a group coordinator or partition leader that is moving
# or still loading, as after a broker restart or on a cluster's first group. librdkafka retries
# them for a subscribed consumer, but ``committed`` and the watermarks hand them straight back.
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)
RETRY_PAUSE = 0.2
"""Seconds between two tries of a read that got a transient answer."""


class LagReader:
    """Reads how far consumer group ``group`` is behind on every partition of ``topic``.

    make_consumer: returns a confluent_kafka ``Consumer`` with ``group.id = group`` that has
    not subscribed; the reader never subscribes it either (``committed`` and the watermarks need
    no membership), so reading never joins the group, triggers a rebalance or commits. Whatever
    it raises (a connection not defined, an unusable TLS file) is that read's ``error``, as
    ``no Kafka client: <exception>``; it is called again at the next read.

    One consumer is kept between reads and dropped (closed) after any failure, so the next read
    starts afresh (a changed connection takes effect then). Safe to call from several threads: a
    lock lets one read at a time use the consumer. If the consumer records its transport errors
    in an ``errors`` attribute (``sitewatch.airflow.hooks.RecordingConsumer``), a failure's
    reason carries its explanation (a refused connection, a TLS problem).
    """

    def __init__(self, make_consumer: Callable[[], Consumer], topic: str, group: str):
        self.topic = topic
        self.group = group
        self._make_consumer = make_consumer
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def read(self, timeout: float) -> KafkaLag:
        """The lag of every partition now, or the reason it could not be read.

        timeout: seconds the whole read may take, waiting for another thread's read included;
        each broker request gets what is left. Partitions are read one request each for their
        watermarks, so a topic of many partitions needs a longer timeout. Never raises for Kafka
        trouble (unreachable broker, timeout, missing topic, refused request) nor for a consumer
        that could not be made.
        """
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(timeout, 0)):
            return self._failure(f"another read did not finish within {timeout:g}s")
        try:
            return self._read(deadline, timeout)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the consumer, if any (a later read makes a new one)."""
        with self._lock:
            self._drop()

    def _read(self, deadline: float, timeout: float) -> KafkaLag:
        if self._consumer is None:
            try:
                self._consumer = self._make_consumer()
            except Exception as exc:  # a connection undefined or unusable fails this read only
                return self._failure(f"no Kafka client: {exc}")
        try:
            lags, committed = _retrying(self._consumer, self.topic, deadline, timeout)
        except _Missing:  # the consumer is fine; the drain has nothing to read yet
            return self._failure(f"topic {self.topic} does not exist")
        except (KafkaException, _Failed) as exc:
            reason = _reason(exc) + _explanation(self._consumer)
            self._drop()
            return self._failure(reason)
        _forget_errors(self._consumer)
        return KafkaLag(self.topic, self.group, lags, committed=committed)

    def _failure(self, reason: str) -> KafkaLag:
        return KafkaLag(self.topic, self.group, {}, error=reason)

    def _drop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # it is being dropped for a failure already; one on closing has nothing to add
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()


def _retrying(consumer, topic: str, deadline: float, timeout: float):
    """``_lags``, tried again after a transient answer (``_TRANSIENT``) while time is left."""
    while True:
        try:
            partitions = _partitions(consumer, topic, deadline, timeout)
            return _lags(consumer, topic, partitions, deadline, timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            transient = isinstance(error, KafkaError) and error.code() in _TRANSIENT
            if not transient or deadline - time.monotonic() <= RETRY_PAUSE:
                raise
            time.sleep(RETRY_PAUSE)


def _partitions(consumer, topic: str, deadline: float, timeout: float) -> list[int]:
    """The topic's partition ids; _Missing when the broker says it does not exist."""
    metadata = consumer.list_topics(topic, timeout=_left(deadline, timeout)).topics.get(topic)
    if metadata is None or (
        metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    ):
        raise _Missing(topic)
    if metadata.error is not None:  # a leader election, say: transient or not, as its code says
        raise _kafka(metadata.error, f"topic {topic} is not available")
    return sorted(metadata.partitions)


def _lags(consumer, topic: str, partitions: list[int], deadline: float, timeout: float):
    """``({partition: lag}, {partition: committed offset})``: each partition's end less where
    the group resumes there, and what the group committed there."""
    asked = [TopicPartition(topic, p) for p in partitions]
    committed = consumer.committed(asked, timeout=_left(deadline, timeout))
    lags, offsets = {}, {}
    for tp in committed:
        if tp.error is not None:
            raise _kafka(tp.error, f"reading {topic}[{tp.partition}]'s committed offset failed")
        marks = consumer.get_watermark_offsets(
            TopicPartition(topic, tp.partition), timeout=_left(deadline, timeout), cached=False
        )
        if marks is None:  # confluent_kafka's way to say the request timed out
            raise _Failed(f"no watermarks for {topic}[{tp.partition}] within {timeout:g}s")
        start, end = marks
        lags[tp.partition] = max(0, end - _resume(tp.offset, start))
        offsets[tp.partition] = max(tp.offset, -1)  # librdkafka says "none" as -1001
    return dict(sorted(lags.items())), dict(sorted(offsets.items()))


def _resume(committed: int, start: int) -> int:
    """Where the group reads a partition next: its committed offset, or the partition's start
    when it committed nothing (the drain reads from the earliest) or committed an offset that
    retention has deleted since (the consumer then resets to the earliest too, so messages no
    longer there are not counted)."""
    return max(committed, start) if committed >= 0 else start


def _left(deadline: float, timeout: float) -> float:
    """Seconds left for the next request; _Failed once the read's time is up (a zero timeout
    would not wait at all, and a negative one would wait forever)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failed(f"timed out after {timeout:g}s")
    return left


def _kafka(error: KafkaError, what: str) -> KafkaException:
    """A KafkaException of ``error``'s code whose text says ``what: <error>``."""
    return KafkaException(KafkaError(error.code(), f"{what}: {error.str()}"))


def _reason(exc: Exception) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _explanation(consumer) -> str:
    """``: <the consumer's recorded transport errors>``, or nothing (no recorder, nothing kept).

    A consumer hands its errors to ``error_cb`` only when polled; polling one that never
    subscribed fetches no messages and joins no group."""
    errors = getattr(consumer, "errors", None)
    if errors is None:
        return ""
    consumer.poll(0)
    why = errors.explain()
    return f": {why}" if why else ""


def _forget_errors(consumer) -> None:
    """After a good read: serve and forget the transport errors recorded so far (say, an idle
    connection the broker closed), so a later failure is explained by its own."""
    errors = getattr(consumer, "errors", None)
    if errors is not None:
        consumer.poll(0)
        errors.clear()
