"""The drain's sensor: waits, in the triggerer, until the topic holds a message not yet drained.

``UndrainedMessageSensor`` is the Kafka provider's ``AwaitMessageSensor`` deferring on a trigger
of sitewatch's own, which reads from where the drain's consumer group stands instead of committing
offsets of its own: it looks up the drain group's committed offsets, assigns itself those
positions (no group membership, no commits, so it can never move the drain's offsets), and fires
on the first message it finds. A backlog fires at once; a caught-up drain waits for the next
observation. Each look runs in a subprocess (``sitewatch.airflow.sensor_look``) so that no Kafka
client ever lives in the triggerer itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from asyncio.subprocess import PIPE
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.apache.kafka.sensors.kafka import AwaitMessageSensor
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

from sitewatch.errors import ConnectionConfigError, ConsumeError
from sitewatch.names import KAFKA_CONN_ID
from sitewatch.pipeline.settings import DrainSettings

log = logging.getLogger(__name__)

# The errors a look reports by name (sensor_look's "kind"); anything else is a ConsumeError.
_LOOK_ERRORS = {cls.__name__: cls for cls in (ConnectionConfigError, ConsumeError)}
# The triggerer keeps its children off the metadata database with an unusable
# sql_alchemy_conn, on which a plain `import airflow` fails. This is how Airflow's own
# virtualenv operator lets its subprocess import Airflow without setting up the database.
LOOK_ENV = {"PYTHON_OPERATORS_VIRTUAL_ENV_MODE": "1"}


class LookCrashed(Exception):
    """The look's subprocess died from a signal (a crash in the Kafka client library)."""


class UndrainedMessageTrigger(BaseTrigger):
    """Fires with ``{topic, partition, offset}`` of the first message past the drain's offsets.

    topics: the topics the drain reads. kafka_config_id: the Kafka connection. look_seconds: how
    long each look (one subprocess) waits before the next starts (``DrainSettings.look_seconds``).
    These three are all it serializes. It is no ``AwaitMessageTrigger``: that one consumes in
    the triggerer and commits in a group of its own, and none of its settings (apply_function,
    poll_interval, commit_offset...) applies to a look.
    Raises ConnectionConfigError when the connection names an unusable TLS file, ConsumeError
    when Kafka fails (with the client's explanation) or looks crashed too often in a row.
    """

    CRASHES_TOLERATED = 3

    def __init__(
        self,
        topics: Sequence[str],
        kafka_config_id: str = KAFKA_CONN_ID,
        look_seconds: float = DrainSettings.look_seconds,
    ) -> None:
        super().__init__()
        self.topics = list(topics)
        self.kafka_config_id = kafka_config_id
        self.look_seconds = look_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.{type(self).__name__}", {
            "topics": self.topics,
            "kafka_config_id": self.kafka_config_id,
            "look_seconds": self.look_seconds,
        }

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
        # Resolved here, where the triggerer reaches every place a connection can live (see
        # sitewatch.airflow.sensor_look), and per look, so a changed connection applies.
        connection = await BaseHook.aget_connection(self.kafka_config_id)
        request = json.dumps(
            {
                "conn_id": self.kafka_config_id,
                "connection": connection.as_json(),
                "topics": self.topics,
                "seconds": self.look_seconds,
            }
        ).encode()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sitewatch.airflow.sensor_look",
            stdin=PIPE,
            stdout=PIPE,
            stderr=PIPE,
            env={**os.environ, **LOOK_ENV},
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
        if "error" not in answer:
            return answer["event"]
        error = _LOOK_ERRORS.get(answer.get("kind"), ConsumeError)
        if error is ConnectionConfigError:  # word for word what the drain's hooks say
            raise error(answer["error"])
        raise error(f"looking for undrained checks failed: {answer['error']}")


class UndrainedMessageSensor(AwaitMessageSensor):
    """``AwaitMessageSensor`` that defers on ``UndrainedMessageTrigger`` (see the module doc).

    A subclass for what it keeps of the provider's sensor: its constructor and templated
    ``topics``/``kafka_config_id``, ``execute_complete`` (returns the event, pushes it under
    ``xcom_push_key``) and its colour in the UI. Of the provider's parameters, those of its own
    trigger mean nothing here (``apply_function`` and its arguments, ``poll_timeout``,
    ``poll_interval``); ``commit_offset`` is False, as the trigger never commits. How long a
    look lasts is ``SITEWATCH_SENSOR_LOOK_SECONDS``, read when the task runs.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(apply_function=None, commit_offset=False, **kwargs)

    def execute(self, context) -> Any:
        """Defer on the trigger. Raises SettingError when a drain setting is unusable, here,
        before waiting, rather than in the drain task after it."""
        settings = DrainSettings.from_env()
        timeout = self.timeout
        if not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=timeout)
        self.defer(
            trigger=UndrainedMessageTrigger(
                topics=self.topics,
                kafka_config_id=self.kafka_config_id,
                look_seconds=settings.look_seconds,
            ),
            method_name="execute_complete",
            timeout=timeout,
        )
