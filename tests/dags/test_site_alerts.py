"""Alerts end to end through ``dag.test()``: a local site flips between up and down, real Kafka,
real PostgreSQL, and a local webhook receiver counts what the callbacks and the drain sent."""

from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest

from sitewatch.airflow.drain_dag import drain_dag
from sitewatch.airflow.factory import site_dag
from sitewatch.config.loader import load_sites
from sitewatch.storage.schema import migrate
from tests.builders import observation, one_site_dag

DEAD_KAFKA = {
    "conn_type": "kafka",
    "extra": {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 2000, "log_level": 0},
}


@pytest.fixture
def results_schema(monkeypatch):
    """Point ``sitewatch_postgres`` at a fresh, migrated schema of the results database, dropped
    after (the drain's ``create_tables`` migrates; alerting only reads and writes rows)."""
    dsn = os.environ.get("SITEWATCH_PG_DSN")
    base = os.environ.get("AIRFLOW_CONN_SITEWATCH_POSTGRES")
    if not dsn or not base:
        pytest.fail("SITEWATCH_PG_DSN / AIRFLOW_CONN_SITEWATCH_POSTGRES unset: run `make test`")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as setup:
        migrate(setup)
    conn = json.loads(base)
    conn["extra"] = {**conn.get("extra", {}), "options": f"-c search_path={schema}"}
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES", json.dumps(conn))
    # make run's environment defines connections of their own; they would not see this schema
    monkeypatch.delenv("AIRFLOW_CONN_SITEWATCH_POSTGRES_ALERTING", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SITEWATCH_POSTGRES_DRAIN", raising=False)
    yield dsn, schema
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def make_dag(tmp_path, monkeypatch, new_topic):
    """Write a one-site sites file with a webhook target; return (site name, DAG builder)."""
    monkeypatch.setenv("SITEWATCH_TOPIC", new_topic())
    name = f"alerts-{uuid.uuid4().hex[:8]}"

    def make(url: str, fmt: str = "json"):
        text = (
            f"sites:\n  - name: {name}\n    url: {url}\n    retries: 0\n"
            f"    notify:\n      - webhook: ops_webhook\n        format: {fmt}\n"
        )
        return one_site_dag(text, tmp_path, monkeypatch)

    return name, make


def stored_state(results_schema, site: str) -> tuple:
    dsn, schema = results_schema
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        row = conn.execute(
            "SELECT state, pipeline_since IS NOT NULL FROM site_alert_state WHERE site = %s",
            (site,),
        ).fetchone()
    return None if row is None else tuple(row)


def test_one_message_per_state_change(web, receiver, results_schema, make_dag, monkeypatch):
    name, make = make_dag

    web.reply = (500, "boom")
    assert make(web.url).test().state == "failed"
    assert receiver.payloads == []  # the down verdict is the drain's: it stores the final check
    assert drain_dag().test().state == "success"
    (down,) = receiver.payloads
    assert (down["site"], down["state"], down["error"]) == (name, "DOWN", "status")
    assert down["detail"] == "status 500 not in 200-399"
    assert down["url"] == web.url
    assert f"/dags/site_{name}/runs/" in down["run_url"]
    assert down["run_url"].endswith("/tasks/probe?try_number=1")  # the attempt's log
    assert stored_state(results_schema, name) == ("down", False)

    assert make(web.url).test().state == "failed"
    assert drain_dag().test().state == "success"
    assert len(receiver.payloads) == 1  # still down: no storm

    web.reply = (200, "<html>ok</html>")
    assert make(web.url).test().state == "success"
    assert len(receiver.payloads) == 1  # the up verdict is the drain's: it stores the up check
    assert drain_dag().test().state == "success"
    assert [p["state"] for p in receiver.payloads] == ["DOWN", "RECOVERED"]
    assert receiver.payloads[1]["since"] == down["since"]  # down since, in the recovery
    assert receiver.payloads[1]["run_url"] is None  # an observation does not name its run
    assert stored_state(results_schema, name) == ("up", False)

    assert make(web.url).test().state == "success"
    assert drain_dag().test().state == "success"
    assert len(receiver.payloads) == 2

    kafka = os.environ["AIRFLOW_CONN_SITEWATCH_KAFKA"]
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", json.dumps(DEAD_KAFKA))
    assert make(web.url).test().state == "failed"
    assert [p["state"] for p in receiver.payloads] == ["DOWN", "RECOVERED", "PIPELINE PROBLEM"]
    pipeline = receiver.payloads[2]
    assert pipeline["error"] == "DeliveryError"
    assert pipeline["detail"].startswith("Kafka did not confirm delivery")
    assert stored_state(results_schema, name) == ("up", True)  # the site is not called down

    assert make(web.url).test().state == "failed"
    assert len(receiver.payloads) == 3  # one pipeline alert until a real verdict

    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka)
    assert make(web.url).test().state == "success"
    assert drain_dag().test().state == "success"
    assert len(receiver.payloads) == 3
    assert stored_state(results_schema, name) == ("up", False)  # closed silently by the up check


def test_first_run_up_is_silent_and_a_run_that_never_started_is_a_pipeline_problem(
    web, receiver, results_schema, make_dag
):
    name, make = make_dag
    dag = make(web.url, fmt="slack")
    assert dag.test().state == "success"
    assert drain_dag().test().state == "success"
    assert receiver.payloads == []
    assert stored_state(results_schema, name) is None  # a site never judged down has no row

    # What the dag-processor calls for a run whose task never ran: the minimal context.
    dag.on_failure_callback({"dag": dag, "run_id": "scheduled__never-started", "reason": "x"})
    (slack,) = receiver.payloads
    assert slack["text"] == (
        f"[sitewatch] PIPELINE PROBLEM: {name} "
        "`run failed: the run failed (x) without a verdict from task probe`"
    )
    # ... and the task callback the scheduler sends for a lost worker (no exception): same problem
    dag.get_task("probe").on_failure_callback[0]({"run_id": "scheduled__worker-lost"})
    assert len(receiver.payloads) == 1
    assert stored_state(results_schema, name) == (None, True)  # still not called down


def test_only_sites_with_targets_get_callbacks(make_dag):
    from sitewatch.config.loader import site_for_url

    plain = site_dag(site_for_url("https://example.com/"))
    assert plain.on_failure_callback is None
    assert not plain.get_task("probe").on_success_callback
    _, make = make_dag
    dag = make("https://example.com/")
    assert dag.on_failure_callback is not None
    task = dag.get_task("probe")
    assert len(task.on_failure_callback) == 1
    assert not task.on_success_callback  # UP is judged by the drain (sitewatch.judge.recoveries)
    assert "| notify | `webhook ops_webhook` |" in dag.doc_md


def test_a_multi_location_run_timed_out_with_nothing_stored_is_one_pipeline_problem(
    receiver, results_schema, tmp_path, monkeypatch
):
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from sitewatch.storage.checks import store_batch

    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n  - name: multi\n    url: https://multi.example/\n    locations: [east, west]\n"
        "    notify:\n      - webhook: ops_webhook\n"
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    dag = site_dag(load_sites(path).sites[0])
    assert all(not task.on_failure_callback for task in dag.tasks)  # the drain judges the runs
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    def timed_out(minutes: int, reason: str = "timed_out") -> None:
        """What the dag-processor hands the DAG's failure callback for a run Airflow failed."""
        at = t0 + timedelta(minutes=minutes)
        run = SimpleNamespace(logical_date=at, run_after=at, run_id=f"scheduled__{at.isoformat()}")
        dag.on_failure_callback(
            {"dag": dag, "dag_run": run, "run_id": run.run_id, "reason": reason}
        )

    timed_out(0, reason="task_failure")  # a location's SiteDown fails the run: the drain's verdict
    assert receiver.payloads == []
    timed_out(5)  # timed out, nothing stored from any location
    (problem,) = receiver.payloads
    assert (problem["state"], problem["error"]) == ("PIPELINE PROBLEM", "no location reported")
    assert "(east, west); are their workers running?" in problem["detail"]
    timed_out(10)  # the problem is open: nothing more
    assert len(receiver.payloads) == 1
    assert stored_state(results_schema, "multi") == (None, True)

    # a run with a check stored (one location reported) is the drain's to judge
    dsn, schema = results_schema
    at = t0 + timedelta(minutes=15)
    check = observation("multi", at, location="east")
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        store_batch(conn, [check])
    receiver.server.requests.clear()
    monkeypatch.setattr(
        "sitewatch.airflow.callbacks.handle", lambda *a, **k: pytest.fail("judged by the drain")
    )
    timed_out(15)
