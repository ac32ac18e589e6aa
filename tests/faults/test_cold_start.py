"""Cold start under load: Airflow starts with 200 site DAGs that are all due at once.

On a small machine the api-server starts slowly and then answers slowly while dozens of task
processes start; a task whose supervisor cannot reach the execution API in time fails without ever
running (no observation published). Such a failure must never pass for the site being down: it is
retried, no run ends red (the site is up), and no stored observation says ``up = false``. The test
counts attempts that failed without starting; scripts/dev.sh gives the execution API client the
patience that keeps this at zero (see write_env).
"""

from __future__ import annotations

import signal
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

SITES = 200


@pytest.mark.timeout(600)  # Airflow stopped and started cold, 200 runs: 2-3 minutes loaded
def test_cold_start_with_200_due_sites(
    private_airflow: Stack,  # noqa: F811
    site_server,  # noqa: F811
):
    stack, server = private_airflow, site_server
    prefix = f"cold{uuid.uuid4().hex[:4]}"
    dag_like = f"site_{prefix}-%"
    # With the scheduler stopped, let the dag-processor register the 200 DAGs (unpaused, so each
    # is due at once); then stop everything and start Airflow cold, with all 200 due.
    stack.stop_component("scheduler", signal.SIGTERM)
    stack.set_sites(
        sites_file([f"{prefix}-{i:03d}" for i in range(SITES)], server.url, schedule=DAILY)
    )
    stack.wait_dags({f"site_{prefix}-{i:03d}" for i in range(SITES)})
    started = time.monotonic()
    stack.restart_airflow()
    stack.wait_runs_done(dag_like, SITES, timeout=900)
    minutes = (time.monotonic() - started) / 60

    tries = stack.tries(dag_like)
    never_started = [a for a in tries if a["start_date"] is None]
    retried = {a["dag_id"] for a in tries if a["try_number"] > 1}
    red = [a for a in tries if a["state"] == "failed"]
    with stack.metadata() as db:
        runs_red = db.execute(
            "SELECT count(*) FROM dag_run WHERE dag_id LIKE %s AND state = 'failed'", (dag_like,)
        ).fetchone()[0]
    published = {
        (a["dag_id"].removeprefix("site_"), a["logical_date"], a["try_number"])
        for a in tries
        if a["state"] == "success"
    }
    rows = stack.wait_stored(f"{prefix}-%", published, timeout=300)
    down = [r for r in rows if not r[3]]

    # every attempt that failed before it started was retried (it is not the site's fault)
    for a in never_started:
        assert a["dag_id"] in retried, f"{a['dag_id']} failed without starting, not retried"
    assert not red and runs_red == 0, f"runs ended red: {[a['dag_id'] for a in red]}"
    assert not down, f"{len(down)} observations say the (running) site was down"
    assert len(rows) == len({r[:3] for r in rows}) == len(published)
    record(
        "cold_start",
        {
            "sites_due_at_start": SITES,
            "attempts": len(tries),
            "failed_without_starting": len(never_started),
            "retried": len(retried),
            "runs_red": runs_red,
            "stored": len(rows),
            "stored_up_false": len(down),
            "minutes_until_all_done": round(minutes, 1),
            "execution_api": "timeout 30 s, 10 retries (scripts/dev.sh write_env)",
        },
    )
