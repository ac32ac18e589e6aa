"""The probe's reused helper threads and its one watchdog thread (sitewatch.probe.offload)."""

from __future__ import annotations

import os
import threading
import time

from sitewatch.probe import offload


def test_run_returns_when_the_work_is_done_and_reuses_the_helper():
    def helpers() -> int:
        return sum(t.name == "sitewatch-helper" for t in threading.enumerate())

    seen = []
    assert offload.run(lambda: seen.append(threading.current_thread()), 5)
    before = helpers()
    for _ in range(20):
        assert offload.run(lambda: seen.append(threading.current_thread()), 5)
    assert helpers() == before  # each job went to an idle helper, none started
    assert all(t.name == "sitewatch-helper" for t in seen)


def test_run_gives_up_at_its_bound_and_the_work_ends_by_itself():
    release, ended = threading.Event(), threading.Event()

    def work():
        release.wait(10)
        ended.set()

    started = time.monotonic()
    assert not offload.run(work, 0.2)
    assert 0.2 <= time.monotonic() - started < 2
    release.set()
    assert ended.wait(5)


def test_a_busy_helper_never_delays_another_job():
    release = threading.Event()
    for _ in range(3):  # three helpers held, as by hung resolvers
        assert not offload.run(lambda: release.wait(10), 0.01)
    done = []
    started = time.monotonic()
    assert offload.run(lambda: done.append(1), 5)
    assert done == [1] and time.monotonic() - started < 1
    release.set()


def test_a_failing_job_keeps_its_helper():
    def boom():
        raise RuntimeError("job failed")

    assert offload.run(boom, 5)
    assert offload.run(lambda: None, 5)


def test_after_calls_the_action_at_its_time_in_order():
    calls = []
    offload.after(0.3, lambda: calls.append(("late", time.monotonic())))
    offload.after(0.1, lambda: calls.append(("early", time.monotonic())))  # wakes the timer
    time.sleep(0.6)
    assert [name for name, _ in calls] == ["early", "late"]


def test_a_cancelled_action_is_not_called():
    calls = []
    cancel = offload.after(0.1, lambda: calls.append(1))
    cancel()
    time.sleep(0.3)
    assert calls == []


def test_cancel_waits_for_an_action_under_way():
    started, state = threading.Event(), []

    def action():
        started.set()
        time.sleep(0.3)
        state.append("done")

    cancel = offload.after(0.0, action)
    assert started.wait(5)
    cancel()
    assert state == ["done"]  # what the action changed is settled when cancel returns


def test_a_forked_child_has_helpers_and_a_watchdog_of_its_own():
    assert offload.run(lambda: None, 5)  # the parent's helper and timer exist
    offload.after(30, lambda: None)
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are not here
        fired = threading.Event()
        ok = offload.run(lambda: None, 5)
        offload.after(0.05, fired.set)
        os._exit(0 if ok and fired.wait(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
