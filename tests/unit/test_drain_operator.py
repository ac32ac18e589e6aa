"""The drain task's run: read until quiet, wait in the triggerer, end only when quiet and old.

The reading itself (``sitewatch.pipeline.drain.drain``) runs against real services in
tests/integration/test_drain.py; here ``_drain_once`` is replaced by a stand-in that says how a
read ended, to check what the task does next.
"""

from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import TaskDeferred

from sitewatch.airflow import drain_dag
from sitewatch.airflow.drain_dag import PRIORITY, DrainOperator
from sitewatch.airflow.drain_dag import drain_dag as build
from sitewatch.airflow.sensor import UndrainedMessageTrigger
from sitewatch.pipeline.drain import DrainResult


@pytest.fixture
def reads(monkeypatch):
    """Each call of the stand-in returns the next DrainResult of the list it gives."""
    queue: list[DrainResult] = []
    monkeypatch.setattr(drain_dag, "_drain_once", lambda settings, stop: queue.pop(0))
    return queue


def test_a_quiet_drain_waits_in_the_triggerer_with_its_run_s_end_and_counts(reads, monkeypatch):
    queue = reads
    monkeypatch.setenv("SITEWATCH_DRAIN_MAX_SECONDS", "600")
    queue.append(DrainResult(batches=2, messages=7, inserted=6, duplicates=1, ended="quiet"))
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        DrainOperator(task_id="drain").execute({})
    assert isinstance(deferred.value.trigger, UndrainedMessageTrigger)
    assert deferred.value.method_name == "resume"
    assert deferred.value.timeout is None  # it waits as long as the topic stays quiet
    kwargs = deferred.value.kwargs
    assert before + 600 <= kwargs["until"] <= time.time() + 600
    assert kwargs["totals"] == {
        "batches": 2,
        "messages": 7,
        "inserted": 6,
        "duplicates": 1,
        "rejected": 0,
    }


def test_a_resumed_drain_adds_to_the_counts_and_ends_its_run_when_quiet_and_old(reads):
    queue = reads
    queue.append(DrainResult(batches=1, messages=3, inserted=3, ended="quiet"))
    totals = {"batches": 2, "messages": 7, "inserted": 6, "duplicates": 1, "rejected": 0}
    done = DrainOperator(task_id="drain").resume({}, until=time.time() - 1, totals=totals)
    assert done == {"batches": 3, "messages": 10, "inserted": 9, "duplicates": 1, "rejected": 0}


def test_sigterm_stops_the_drain_which_ends_without_waiting_again(monkeypatch):
    operator = DrainOperator(task_id="drain")

    def stopped(settings, stop):
        assert not stop()
        operator.on_kill()  # what the task runner does on SIGTERM, while the drain reads
        assert stop()
        return DrainResult(batches=1, messages=1, inserted=1, ended="stopped")

    monkeypatch.setattr(drain_dag, "_drain_once", stopped)
    done = operator.resume({}, until=time.time() + 3600, totals={})
    assert done["inserted"] == 1


def test_the_drain_dag_s_tasks_are_queued_before_site_tasks():
    dag = build()
    assert [t.task_id for t in dag.topological_sort()] == [
        "create_tables",
        "wait_for_checks",
        "drain",
    ]
    for task in dag.tasks:
        assert (task.priority_weight, task.weight_rule) == (PRIORITY, "absolute")
