"""The drain's sensor: waits, in the triggerer, until the topic holds a message not yet drained.

It builds on the Kafka provider's ``AwaitMessageSensor``, with a trigger that reads from where the
drain's consumer group stands instead of committing offsets of its own: it looks up the drain
group's committed offsets, assigns itself those positions (no group membership, no commits, so it
can never move the drain's offsets), and fires on the first message it finds. A backlog fires at
once; a caught-up drain waits for the next observation. Each look runs in a subprocess
(``sitewatch.airflow.sensor_look``) so that no Kafka client ever lives in the triggerer itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from asyncio.subprocess import PIPE
from datetime import timedelta
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.providers.apache.kafka.sensors.kafka import AwaitMessageSensor
from airflow.providers.apache.kafka.triggers.await_message import AwaitMessageTrigger
from airflow.triggers.base import TriggerEvent
from asgiref.sync import sync_to_async

from sitewatch.errors import ConsumeError
from sitewatch.names import DRAIN_GROUP, SENSOR_GROUP

log = logging.getLogger(__name__)


class LookCrashed(Exception):
    """The look's subprocess died from a signal (a crash in the Kafka client library)."""


class UndrainedMessageTrigger(AwaitMessageTrigger):
    """Fires with ``{topic, partition, offset}`` of the first message past the drain's offsets."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{__name__}.{type(self).__name__}", kwargs

    # Each look runs in a short subprocess (see sitewatch.airflow.sensor_look): a librdkafka
    # client inside the triggerer crashed it now and then, and a dead triggerer stops the drain.
    LOOK_SECONDS = 30.0

    CRASHES_TOLERATED = 3

    async def run(self):
        crashes = 0
        while True:
            try:
                event = await self._look()
            except LookCrashed as exc:
                # librdkafka 2.16 can crash in OffsetFetch while a fresh broker still loads its
                # offsets topic: transient, and now harmless to the triggerer. Look again.
                crashes += 1
                if crashes > self.CRASHES_TOLERATED:
                    raise ConsumeError(f"looking for undrained checks failed: {exc}") from exc
                log.warning("look for undrained checks crashed (%s); retrying", exc)
                await asyncio.sleep(5)
                continue
            crashes = 0
            if event is not None:
                yield TriggerEvent(event)
                return

    async def _look(self) -> dict | None:
        request = json.dumps(
            {
                "config": await sync_to_async(self._client_config)(),
                "topics": list(self.topics),
                "drain_group": DRAIN_GROUP,
                "seconds": self.LOOK_SECONDS,
                "poll_timeout": self.poll_timeout,
            }
        ).encode()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sitewatch.airflow.sensor_look",
            stdin=PIPE,
            stdout=PIPE,
            stderr=PIPE,
        )
        try:
            out, err = await proc.communicate(request)
        finally:
            if proc.returncode is None:  # cancelled: the look must not outlive the trigger
                proc.kill()
                await proc.wait()
        if proc.returncode < 0:
            raise LookCrashed(f"killed by signal {-proc.returncode}")
        try:
            answer = json.loads(out)
        except ValueError:
            answer = {"error": f"exit {proc.returncode}: {err.decode(errors='replace')[-500:]}"}
        if "error" in answer:
            raise ConsumeError(f"looking for undrained checks failed: {answer['error']}")
        return answer["event"]

    def _client_config(self) -> dict:
        """The connection's librdkafka settings (plain values only) with the sensor's group."""
        config = KafkaBaseHook(kafka_config_id=self.kafka_config_id)._build_config()
        plain = {k: v for k, v in config.items() if isinstance(v, str | int | float | bool)}
        return {**plain, "group.id": SENSOR_GROUP}


class UndrainedMessageSensor(AwaitMessageSensor):
    """``AwaitMessageSensor`` that defers on ``UndrainedMessageTrigger`` (see the module doc)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(apply_function=None, **kwargs)

    def execute(self, context) -> Any:
        timeout = self.timeout
        if not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=timeout)
        self.defer(
            trigger=UndrainedMessageTrigger(
                topics=self.topics,
                kafka_config_id=self.kafka_config_id,
                poll_timeout=self.poll_timeout,
                poll_interval=self.poll_interval,
                commit_offset=False,
            ),
            method_name="execute_complete",
            timeout=timeout,
        )
