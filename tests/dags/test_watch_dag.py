"""The ``sitewatch_watch`` DAG through ``dag.test()``: a real look at Kafka and PostgreSQL, its
state in the Airflow Variable, and the message at a local webhook receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.models.variable import Variable

from sitewatch.airflow.hooks import ObservationProducerHook
from sitewatch.airflow.watch_dag import watch_dag
from sitewatch.judge.watch import WatchState
from sitewatch.names import WATCH_STATE_VARIABLE


@pytest.fixture
def watched(tmp_path, monkeypatch, new_topic, receiver):
    """A fresh topic as the observations topic, and a sites file whose site notifies the
    receiver; the Variable starts from the state given to the returned function and is deleted
    after."""
    topic = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", topic)
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n  - name: shop\n    url: https://shop.example.com/\n"
        "    notify:\n      - webhook: ops_webhook\n"
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))

    def start(state: WatchState) -> str:
        Variable.set(WATCH_STATE_VARIABLE, state.to_json())
        return topic

    yield start
    Variable.delete(WATCH_STATE_VARIABLE)


def stored() -> WatchState:
    return WatchState.from_json(Variable.get(WATCH_STATE_VARIABLE))


def test_a_drain_that_left_messages_unread_for_minutes_is_one_pipeline_problem(watched, receiver):
    now = datetime.now(UTC)
    # the looks before saw partition 0 wait, with nothing committed, four minutes ago
    topic = watched(
        WatchState(
            looked_at=now - timedelta(minutes=1), waiting={0: (-1, now - timedelta(minutes=4))}
        )
    )
    producer = ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    for i in range(3):
        producer.produce(topic, value=f"m{i}".encode(), partition=0)
    assert producer.flush(30) == 0

    assert watch_dag().test().state == "success"
    (problem,) = receiver.payloads
    assert (problem["state"], problem["site"], problem["concern"]) == (
        "PIPELINE PROBLEM",
        None,
        "pipeline",
    )
    assert problem["error"] == "drain stalled"
    assert "while 3 messages wait (partitions 0)" in problem["detail"]
    assert "/dags/sitewatch_watch/runs/" in problem["run_url"]
    assert stored().announced

    assert watch_dag().test().state == "success"
    assert len(receiver.payloads) == 1  # still stalled: said once


def test_a_pipeline_healthy_again_is_one_all_clear(watched, receiver):
    now = datetime.now(UTC)
    since = now - timedelta(minutes=10)
    watched(
        WatchState(
            looked_at=now - timedelta(minutes=1),
            healthy_since=now - timedelta(minutes=1),
            problem_since=since,
            error="Kafka",
            detail="timed out",
            announced=True,
        )
    )

    assert watch_dag().test().state == "success"
    (over,) = receiver.payloads
    assert (over["state"], over["concern"], over["since"]) == (
        "PIPELINE PROBLEM OVER",
        "pipeline",
        since.isoformat(timespec="seconds"),
    )
    assert stored().problem_since is None
