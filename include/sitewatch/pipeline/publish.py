"""Publishing observations to Kafka with confirmed delivery.

The task succeeds only after the broker confirmed the write, so an observation is never lost: the
producer is idempotent with ``acks=all`` (see ``PRODUCER_GUARANTEES``) and ``publish`` waits for the
delivery report instead of fire-and-forget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException

from sitewatch.errors import DeliveryError
from sitewatch.names import topic
from sitewatch.observation import Observation

log = logging.getLogger(__name__)

# Forced on top of the connection's own settings: without them a broker failover can drop or
# duplicate an observation, which is exactly what sitewatch promises never happens.
PRODUCER_GUARANTEES = {"enable.idempotence": True, "acks": "all"}
# Used unless the connection says otherwise: how long librdkafka keeps retrying one delivery.
PRODUCER_DEFAULTS = {"message.timeout.ms": 30_000}
# librdkafka's two names of that one setting; it applies a config in order, so the last wins.
DELIVERY_TIMEOUT_KEYS = ("message.timeout.ms", "delivery.timeout.ms")
LIBRDKAFKA_DELIVERY_TIMEOUT_MS = 300_000  # its default, for a config that sets neither
# Waited past librdkafka's own limit, so that its report (with the precise error) comes first.
DELIVERY_MARGIN_SECONDS = 5.0


def delivery_wait(config: Mapping[str, Any]) -> float | None:
    """Seconds ``publish`` waits for the delivery report of a producer built from ``config``.

    That is the producer's effective ``message.timeout.ms`` (or its alias ``delivery.timeout.ms``,
    whichever ``config`` sets last) plus ``DELIVERY_MARGIN_SECONDS``. None when it is 0,
    librdkafka's "retry forever": the task then waits as long as librdkafka does. ``config`` must
    already have been accepted by librdkafka (the value is a whole number of milliseconds).
    """
    timeout_ms = LIBRDKAFKA_DELIVERY_TIMEOUT_MS
    for key, value in config.items():
        if key in DELIVERY_TIMEOUT_KEYS:
            timeout_ms = int(value)
    if timeout_ms == 0:
        return None
    return timeout_ms / 1000 + DELIVERY_MARGIN_SECONDS


def publish(
    producer, observation: Observation, *, to_topic: str | None = None, timeout: float | None = None
) -> None:
    """Produce one observation keyed by site name and wait for the broker's confirmation.

    producer: a ``confluent_kafka.Producer`` from
    ``sitewatch.airflow.hooks.ObservationProducerHook`` (its ``delivery_wait`` and ``errors``).
    timeout: seconds to wait for the delivery report; by default ``producer.delivery_wait``
    (see ``delivery_wait``), so the task never gives up before librdkafka does, whatever
    ``message.timeout.ms`` the connection sets.
    Raises DeliveryError when the broker rejected the message or did not confirm it in time; its
    message carries the client's own explanation (``producer.errors``, see
    sitewatch.airflow.hooks), e.g. which TLS certificate problem kept it from reaching the broker.
    For one producer shared by many threads, use ``SharedPublisher``: this flushes the producer.
    """
    name = to_topic or topic()
    wait = timeout if timeout is not None else producer.delivery_wait
    outcome: list = []
    _produce(producer, name, observation, lambda err, msg: outcome.append(err))
    remaining = producer.flush() if wait is None else producer.flush(wait)
    _judge(producer, name, wait, outcome, remaining)
    log.debug("delivered site=%s topic=%s", observation.site, name)


class SharedPublisher:
    """One producer for the many threads of a long-lived process (the triggerer's probes).

    ``publish`` above flushes its producer, which waits for every message in it: right for a task
    that sends one, wrong when threads send at once (each would wait for all the others). Here a
    thread of its own serves the delivery reports and each caller waits for its own message only,
    with the same guarantees and errors as ``publish``. ``retire`` lets the reports of messages
    already sent arrive, then stops that thread.
    """

    def __init__(self, producer, *, poll_seconds: float = 0.1) -> None:
        self.producer = producer
        self.poll_seconds = poll_seconds
        self._retired = threading.Event()
        self._reports = threading.Thread(
            target=self._serve, name="sitewatch-delivery-reports", daemon=True
        )
        self._reports.start()

    def publish(
        self, observation: Observation, *, to_topic: str | None = None, timeout: float | None = None
    ) -> None:
        """Like ``publish(producer, observation)``; thread-safe. Raises DeliveryError."""
        name = to_topic or topic()
        wait = timeout if timeout is not None else self.producer.delivery_wait
        outcome: list = []
        reported = threading.Event()

        def on_delivery(err, msg) -> None:
            outcome.append(err)
            reported.set()

        _produce(self.producer, name, observation, on_delivery)
        remaining = 0 if reported.wait(wait) else 1
        _judge(self.producer, name, wait, outcome, remaining)

    def retire(self) -> None:
        """Send nothing more through this publisher; its thread ends once the reports are in."""
        self._retired.set()

    def _serve(self) -> None:
        # len(producer): messages not yet reported. librdkafka reports every one, at the latest
        # when its message.timeout.ms runs out, so a retired publisher's thread always ends.
        while not (self._retired.is_set() and len(self.producer) == 0):
            self.producer.poll(self.poll_seconds)


def _produce(producer, name: str, observation: Observation, on_delivery) -> None:
    try:
        producer.produce(
            name,
            key=observation.site.encode(),
            value=observation.to_message(),
            on_delivery=on_delivery,
        )
    except (BufferError, KafkaException) as exc:
        raise DeliveryError(f"could not queue observation for {name}: {exc}") from exc


def _judge(producer, name: str, wait: float | None, outcome: list, remaining: int) -> None:
    """Raise DeliveryError unless the one delivery report in ``outcome`` says delivered."""
    if remaining or not outcome:
        raise DeliveryError(
            f"Kafka did not confirm delivery to {name} within {wait:.0f}s "
            f"({remaining} message(s) still queued){_why(producer)}"
        )
    if outcome[0] is not None:
        raise DeliveryError(
            f"Kafka did not confirm delivery to {name}: {outcome[0].str()}{_why(producer)}"
        )


def _why(producer) -> str:
    errors = getattr(producer, "errors", None)
    explanation = errors.explain() if errors is not None else ""
    return f": {explanation}" if explanation else ""
