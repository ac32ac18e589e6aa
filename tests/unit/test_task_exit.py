"""Airflow's task supervisor sees a task process's exit at once (sitewatch.airflow.task_exit).

A real supervisor (``WatchedSubprocess.start``, the fork and sockets Airflow uses for a task)
watches a child that closes every socket to it, as a process does when it exits, and ends a
moment later: the window in which Airflow 3.3 sleeps out ``min_heartbeat_interval``.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

LINGER = 0.3  # seconds between the child's last socket closing and its exit
WAIT = 3.0  # the longest one wait of the supervisor may take (min_heartbeat_interval: 5 s)


def closes_its_sockets_then_lingers() -> None:
    os.closerange(0, 1024)
    time.sleep(LINGER)
    os._exit(7)


def watch_until_exit() -> tuple[int, float]:
    """Start the child under Airflow's supervisor and service it as ``_monitor_subprocess``
    does; its exit code and the seconds from start to the supervisor knowing it."""
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    start = time.monotonic()
    proc = WatchedSubprocess.start(target=closes_its_sockets_then_lingers, id=uuid.uuid4())
    for _ in range(10):
        code = proc._service_subprocess(max_wait_time=WAIT)
        if code is not None:
            return code, time.monotonic() - start
    pytest.fail("the supervisor never saw the child exit")


def test_airflow_sleeps_a_whole_wait_after_the_sockets_close(monkeypatch):
    """What the correction is for, pinned on the installed Airflow. If this fails, Airflow fixed
    it: drop sitewatch.airflow.task_exit."""
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    original = WatchedSubprocess._service_subprocess
    monkeypatch.setattr(
        WatchedSubprocess, "_service_subprocess", getattr(original, "__wrapped__", original)
    )
    code, took = watch_until_exit()
    assert code == 7
    assert took >= WAIT


def test_the_supervisor_sees_the_exit_when_it_happens(monkeypatch):
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from sitewatch.airflow.task_exit import wait_for_exit_without_sockets

    monkeypatch.setattr(  # undone after this test
        WatchedSubprocess, "_service_subprocess", WatchedSubprocess._service_subprocess
    )
    wait_for_exit_without_sockets()
    wait_for_exit_without_sockets()  # once only
    assert not hasattr(WatchedSubprocess._service_subprocess.__wrapped__, "__wrapped__")
    code, took = watch_until_exit()
    assert code == 7
    assert LINGER <= took < WAIT
