"""Publishing observations to Kafka with confirmed delivery.

The task succeeds only after the broker confirmed the write, so an observation is never lost: the
producer is idempotent with ``acks=all`` (see ``PRODUCER_GUARANTEES``) and ``publish`` waits for the
delivery report instead of fire-and-forget.
"""

from __future__ import annotations

import logging
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
    """
    name = to_topic or topic()
    wait = timeout if timeout is not None else producer.delivery_wait
    outcome: list = []

    def on_delivery(err, msg):
        outcome.append(err)

    try:
        producer.produce(
            name,
            key=observation.site.encode(),
            value=observation.to_message(),
            on_delivery=on_delivery,
        )
    except (BufferError, KafkaException) as exc:
        raise DeliveryError(f"could not queue observation for {name}: {exc}") from exc
    remaining = producer.flush() if wait is None else producer.flush(wait)
    if remaining or not outcome:
        raise DeliveryError(
            f"Kafka did not confirm delivery to {name} within {wait:.0f}s "
            f"({remaining} message(s) still queued){_why(producer)}"
        )
    if outcome[0] is not None:
        raise DeliveryError(
            f"Kafka did not confirm delivery to {name}: {outcome[0].str()}{_why(producer)}"
        )
    log.debug("delivered site=%s topic=%s", observation.site, name)


def _why(producer) -> str:
    errors = getattr(producer, "errors", None)
    explanation = errors.explain() if errors is not None else ""
    return f": {explanation}" if explanation else ""
