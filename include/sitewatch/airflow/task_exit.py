"""Make Airflow's task supervisor notice at once that a task process ended.

Airflow 3.3's supervisor (``ActivitySubprocess._monitor_subprocess``) waits for its task process
in a ``select`` on the process's sockets, for up to ``[workers] min_heartbeat_interval`` (5 s)
at a time, and after each wait asks whether the process has exited. The process closes its
sockets as it exits, a moment before the kernel lets the supervisor reap it. When the supervisor
reads the last end-of-file in that moment, the process is still there, nothing is left to select
on, and the next ``select`` sleeps the whole 5 s before it asks again. Measured on the Celery
worker of another location at 300 checks a minute (bench/notes.md, section 9): 543 of 1,786 checks
held their worker slot 5.0 s after their task had reported success (the Celery task's p50 0.49 s,
its p90 5.37 s), so the location's 8 slots passed about 250 checks a minute and its runs waited
in Airflow's queue for a minute and more.

``wait_for_exit_without_sockets`` changes that one case: when every socket is closed and the
process has not been reaped, the supervisor waits on the process itself (for as long as it would
have slept), and sees its exit the moment it happens. Anything else goes on as Airflow does it.
``sitewatch.airflow.preload`` applies it, so every LocalExecutor worker and every Celery worker
started with sitewatch's Celery configuration has it; tests/unit/test_task_exit.py pins the
Airflow behaviour it corrects, so an Airflow that fixes it shows up there.
"""

from __future__ import annotations

import functools
import logging
from contextlib import suppress

log = logging.getLogger(__name__)


def wait_for_exit_without_sockets() -> None:
    """Wrap ``WatchedSubprocess._service_subprocess`` (once): with no socket left to select on
    and no exit code yet, wait on the process instead of ``select``-ing on nothing."""
    try:
        from airflow.sdk.execution_time.supervisor import WatchedSubprocess

        original = WatchedSubprocess._service_subprocess
    except (ImportError, AttributeError) as exc:  # another Airflow: leave it as it is
        log.warning("wait_for_exit_without_sockets: not applied (%s)", exc)
        return
    if getattr(original, "waits_for_exit", False):
        return

    @functools.wraps(original)
    def _service_subprocess(self, max_wait_time, raise_on_timeout=False, expect_signal=None):
        if self._exit_code is not None or self.selector.get_map():
            return original(self, max_wait_time, raise_on_timeout, expect_signal)
        process = self._process
        with suppress(process.TimeoutExpired, process.ProcessNotFound):
            process.wait(timeout=max(0.01, max_wait_time))  # the exit code stays with process
        return self._check_subprocess_exit(
            raise_on_timeout=raise_on_timeout, expect_signal=expect_signal
        )

    _service_subprocess.waits_for_exit = True
    WatchedSubprocess._service_subprocess = _service_subprocess
