"""The triggerer restarted, then the scheduler killed, while the drain waits in the triggerer.

Observations published while a component is down must all be stored, once, after it is back: the
deferred sensor (or drain task, which defers between bursts) is picked up again (by the new
triggerer, or scheduled by the new scheduler when its trigger fires) and the drain resumes from
its committed offsets.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from sitewatch.pipeline.publish import PRODUCER_GUARANTEES
from tests.builders import observation
from tests.faults.stack import Stack, private_airflow, private_stack, record  # noqa: F401

PER_FAULT = 500
# Recent: the drain stores only checks inside the retention window.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def publish(stack: Stack, site: str, start: int, count: int) -> set[tuple]:
    producer = Producer(
        {"bootstrap.servers": stack.env["SITEWATCH_KAFKA_BOOTSTRAP"], **PRODUCER_GUARANTEES}
    )
    keys = set()
    for i in range(start, start + count):
        at = T0 + timedelta(minutes=i)
        obs = observation(site, at)
        producer.produce(stack.env["SITEWATCH_TOPIC"], key=site.encode(), value=obs.to_message())
        keys.add((site, at, 1))
    assert producer.flush(30) == 0
    return keys


@pytest.mark.timeout(600)  # two faults, and the private stack's start: this test often comes first
def test_drain_resumes_after_triggerer_restart_and_scheduler_crash(
    private_airflow: Stack,  # noqa: F811
):
    stack = private_airflow
    site = f"rst-{uuid.uuid4().hex[:6]}"
    published: set[tuple] = set()
    faults = []

    # 1. triggerer restarted (SIGTERM, then started again) with the sensor deferred in it
    stack.drain_waiting()
    stack.stop_component("triggerer", signal.SIGTERM)
    published |= publish(stack, site, 0, PER_FAULT)
    stack.start_component("triggerer")
    faults.append("triggerer SIGTERM + start while the sensor was deferred")
    rows = stack.wait_stored(site, published)
    assert len(rows) == len(published)

    # 2. scheduler killed (SIGKILL, its executor's workers with it) with the sensor deferred
    stack.drain_waiting()
    stack.stop_component("scheduler", signal.SIGKILL)
    published |= publish(stack, site, PER_FAULT, PER_FAULT)
    time.sleep(5)  # the trigger fires while no scheduler is there to act on it
    stack.start_component("scheduler")
    faults.append("scheduler SIGKILL + start while the sensor was deferred")
    rows = stack.wait_stored(site, published)
    keys = [r[:3] for r in rows]
    assert len(keys) == len(set(keys)) == len(published)
    assert set(keys) == published
    record(
        "airflow_restart",
        {
            "faults": faults,
            "produced": len(published),
            "stored": len(keys),
            "lost": len(published - set(keys)),
            "duplicated": len(keys) - len(set(keys)),
        },
    )
