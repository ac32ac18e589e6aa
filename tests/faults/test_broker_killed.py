"""The Kafka broker SIGKILLed while 20 site DAG runs are in flight, then restarted.

Each run's probe is held at the local site until all 20 are waiting; then the broker is killed and
the probes let go, so every first attempt publishes into a dead broker. Those attempts must fail
with ``DeliveryError`` (a pipeline failure, not the site), their retries must succeed once the
broker is back, and in the end every attempt whose delivery Kafka confirmed is in ``site_checks``
exactly once, and nothing else is.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.builders import DAILY, sites_file
from tests.faults.stack import (  # noqa: F401
    Stack,
    private_airflow,
    private_stack,
    record,
    site_server,
)

SITES = 20
# how Airflow's structured (JSON) task log names the exception an attempt failed with
DELIVERY_ERROR = '"exc_type":"DeliveryError"'


@pytest.mark.timeout(600)  # a broker killed and started again, runs retried: about 2 minutes loaded
def test_runs_in_flight_when_the_broker_dies_fail_then_retry_and_lose_nothing(
    private_airflow: Stack,  # noqa: F811
    site_server,  # noqa: F811
):
    stack, server = private_airflow, site_server
    prefix = f"brk{uuid.uuid4().hex[:4]}"
    server.hold(SITES)
    names = [f"{prefix}-{i:02d}" for i in range(SITES)]
    stack.set_sites(
        sites_file(names, server.url, schedule=DAILY, retries=3, retry_delay="5s", timeout="100s")
    )
    # The sites are unpaused at creation, so each DAG's run is due as soon as it is parsed.
    assert server.all_waiting.wait(300), f"only {server.requests} probes reached the site"
    stack.kill_kafka()
    server.release.set()
    time.sleep(8)  # every held probe is now publishing into a dead broker
    stack.dev("services")  # restarts the broker on its existing data (PostgreSQL is left alone)

    dag_like = f"site_{prefix}-%"
    stack.wait_runs_done(dag_like, SITES, timeout=300)
    tries = stack.tries(dag_like)
    for attempt in tries:
        attempt["key"] = (
            attempt["dag_id"].removeprefix("site_"),
            attempt["logical_date"],
            attempt["try_number"],
        )
        attempt["delivery_error"] = DELIVERY_ERROR in stack.task_log(attempt)
    confirmed = {a["key"] for a in tries if a["state"] == "success"}
    unconfirmed = [a for a in tries if a["delivery_error"]]
    rows = stack.wait_stored(f"{prefix}-%", confirmed)
    keys = [r[:3] for r in rows]

    runs = {a["dag_id"] for a in tries if a["state"] == "success"}
    assert len(runs) == SITES, "every run ends green once the broker is back"
    assert unconfirmed, "the fault had no effect: no attempt met the dead broker"
    assert all(a["state"] in ("failed", "up_for_retry") for a in unconfirmed)
    for a in unconfirmed:  # each failed delivery was retried
        assert any(b["dag_id"] == a["dag_id"] and b["try_number"] > a["try_number"] for b in tries)
    other = [a for a in tries if a["state"] != "success" and not a["delivery_error"]]
    assert not other, f"attempts that failed for another reason: {other}"
    assert len(keys) == len(set(keys)), "an observation stored twice"
    assert set(keys) <= {a["key"] for a in tries}, "a row for an attempt that never ran"
    assert confirmed <= set(keys)
    assert all(r[3] for r in rows), "the site is up: no row may say otherwise"
    # An attempt can fail with DeliveryError although the broker wrote its message just before it
    # died (the acknowledgement was lost): its row then exists, once, under its own attempt number.
    stored_unconfirmed = sum(a["key"] in set(keys) for a in unconfirmed)
    record(
        "broker_killed",
        {
            "fault": "Kafka broker SIGKILL with 20 probes in flight, restarted ~8 s later",
            "runs": SITES,
            "attempts": len(tries),
            "attempts_failed_with_delivery_error": len(unconfirmed),
            "attempts_confirmed": len(confirmed),
            "stored": len(keys),
            "stored_of_unconfirmed": stored_unconfirmed,
            "lost": len(confirmed - set(keys)),
            "duplicated": len(keys) - len(set(keys)),
            "runs_green": len(runs),
        },
    )
