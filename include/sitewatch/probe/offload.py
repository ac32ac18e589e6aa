"""The probe's helper threads, reused: bounded work off the caller's thread, and one watchdog.

An attempt hands work it cannot interrupt (a DNS lookup, a regex search, ``expect`` and
extraction on a response) to a helper thread and waits for it at most until its deadline
(``run``); and it asks for its sockets to be cut when the deadline passes (``after``). Starting a
thread for each costs about 0.3 ms and a timer thread as much again, several per attempt; here
the helpers are daemon threads that stay for the next job (``IDLE_SECONDS``), a new one starts
only when none is free (a hung resolver or a long search never makes another attempt wait), and
one timer thread serves every attempt's deadline. After a fork the child starts afresh: the
parent's threads do not exist there.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

IDLE_SECONDS = 60.0  # a helper with no job this long ends

log = logging.getLogger(__name__)


class _Job:
    __slots__ = ("work", "done")

    def __init__(self, work: Callable[[], object]):
        self.work = work
        self.done = threading.Event()


class _Helpers:
    """Daemon threads taking jobs from one queue; a job never waits for a busy one."""

    def __init__(self):
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0  # helpers waiting for a job and not yet promised one

    def submit(self, job: _Job) -> None:
        with self.lock:
            start = self.idle == 0
            if not start:
                self.idle -= 1  # promised this job
        if start:
            helper = threading.Thread(target=self._serve, args=(job,), name="sitewatch-helper")
            helper.daemon = True
            helper.start()
        else:
            self.jobs.put(job)

    def _serve(self, job: _Job | None) -> None:
        while True:
            if job is not None:
                try:
                    job.work()
                except Exception:  # the work reports its own outcome; never lose the thread
                    log.exception("sitewatch helper job failed")
                finally:
                    job.done.set()
                with self.lock:
                    self.idle += 1
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self.lock:
                    if self.idle > 0:  # nobody was promised this helper: end it
                        self.idle -= 1
                        return
                job = None  # a job was promised as the wait ended: take it


class _Entry:
    __slots__ = ("action", "running", "finished")

    def __init__(self, action: Callable[[], None]):
        self.action: Callable[[], None] | None = action
        self.running = False
        self.finished = threading.Event()


class _Timer:
    """One thread calling each entry's action at its time, unless it was cancelled first."""

    def __init__(self):
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, _Entry]] = []
        self.order = itertools.count()
        self.thread: threading.Thread | None = None

    def schedule(self, seconds: float, action: Callable[[], None]) -> Callable[[], None]:
        entry = _Entry(action)
        when = time.monotonic() + seconds
        with self.cond:
            heapq.heappush(self.heap, (when, next(self.order), entry))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="sitewatch-watchdog")
                self.thread.daemon = True
                self.thread.start()
            elif self.heap[0][2] is entry:
                self.cond.notify()  # earlier than what the thread sleeps for
        return lambda: self._cancel(entry)

    def _cancel(self, entry: _Entry) -> None:
        with self.cond:
            entry.action = None  # lets go of what the action holds (an attempt's sockets)
            running = entry.running
        if running:
            entry.finished.wait()  # the action ends before the caller reads what it changed

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cond.wait(None if not self.heap else self.heap[0][0] - time.monotonic())
                _, _, entry = heapq.heappop(self.heap)
                action, entry.running = entry.action, entry.action is not None
            if action is None:
                continue
            try:
                action()
            except Exception:
                log.exception("sitewatch watchdog action failed")
            finally:
                entry.finished.set()


_helpers = _Helpers()
_timer = _Timer()


def _after_fork() -> None:
    global _helpers, _timer
    _helpers, _timer = _Helpers(), _Timer()


os.register_at_fork(after_in_child=_after_fork)


def run(work: Callable[[], object], seconds: float) -> bool:
    """Run ``work`` on a helper thread and wait for it at most ``seconds``: True when it
    finished in time. Else it goes on in the background until it ends by itself; ``work``
    keeps its outcome where the caller looks (a dict or list it closes over)."""
    job = _Job(work)
    _helpers.submit(job)
    return job.done.wait(seconds)


def after(seconds: float, action: Callable[[], None]) -> Callable[[], None]:
    """Call ``action`` on the watchdog thread in ``seconds``; returns the function that cancels
    it, which returns only once a call already under way has ended."""
    return _timer.schedule(seconds, action)
