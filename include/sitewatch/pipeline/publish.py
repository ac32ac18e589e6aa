"""Publishing observations to Kafka with confirmed delivery.

The task succeeds only after the broker confirmed the write, so an observation is never lost: the
producer is idempotent with ``acks=all`` (see ``PRODUCER_GUARANTEES``) and ``publish`` waits for the
delivery report instead of fire-and-forget.
"""

from __future__ import annotations

import logging

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


def publish(
    producer, observation: Observation, *, to_topic: str | None = None, timeout: float = 35.0
) -> None:
    """Produce one observation keyed by site name and wait for the broker's confirmation.

    producer: a ``confluent_kafka.Producer`` (from ``sitewatch.airflow.hooks.producer_hook``).
    timeout: seconds to wait for the delivery report; keep it above the producer's
    ``message.timeout.ms`` so librdkafka reports its own, more precise error first.
    Raises DeliveryError when the broker rejected the message or did not confirm it in time; its
    message carries the client's own explanation (``producer.errors``, see
    sitewatch.airflow.hooks), e.g. which TLS certificate problem kept it from reaching the broker.
    """
    name = to_topic or topic()
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
    remaining = producer.flush(timeout)
    if remaining or not outcome:
        raise DeliveryError(
            f"Kafka did not confirm delivery to {name} within {timeout:.0f}s "
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
