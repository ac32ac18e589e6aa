"""``ProbeTrigger``: one attempt at one site, run in the triggerer.

A site's ``probe`` task starts deferred on this trigger (``ProbeOperator``, start_from_trigger),
so a healthy check needs no worker: the trigger probes the site and publishes the observation in
a pool thread (``requests`` blocks, and the triggerer's event loop must not), then

- up: yields ``TaskSuccessEvent`` and the task ends in the triggerer;
- down, and the run's last try (``last_try``): publishes the observation as final and yields
  it; the task resumes on a worker only to fail with ``SiteDown``. The drain judges the stored
  check (DOWN), so the alert does not wait for a worker;
- down with a retry left, or a try whose rank only a worker knows: yields the observation; the
  task resumes on a worker, which publishes it and raises ``SiteDown``, so Airflow's retries
  re-check the site (each retry starts in the triggerer again) and a run turns red only after its
  last attempt, exactly as on the worker path;
- the attempt cannot count (Kafka did not confirm, a header's secret is not set, the site left the
  sites file): yields the error, raised again on the worker under its own name.

A site that does not answer holds its thread for its whole ``timeout``, so two rules keep it from
delaying the others: at most one probe per site and location is in flight (a second one waits for
its turn in the event loop, holding no thread), and the pool has a thread for every trigger the
triggerer may hold (its ``[triggerer] capacity``). A trigger that waits too long fails its attempt
with ``TriggerTimeout`` on a worker (``ProbeOperator.resume_execution``).

The summary line of each attempt goes to the attempt's log (the UI shows the trigger's part with
it). One Kafka producer per connection serves every probe of the process (``SharedPublisher``);
after a failed delivery it is replaced, at most once a minute, so that a changed connection (new
certificates) takes effect.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from sitewatch.errors import ConfigError, DeliveryError, SettingError, SiteDown
from sitewatch.names import KAFKA_CONN_ID, LOCAL_LOCATION

log = logging.getLogger(__name__)

THREADS_VAR = "SITEWATCH_PROBE_THREADS"
# Airflow's default [triggerer] capacity, for a triggerer whose configuration cannot be read.
DEFAULT_CAPACITY = 1000
MAX_THREADS = 1024
REPLACE_AFTER_SECONDS = 60.0
# The triggerer closes a trigger's log file as soon as the trigger is reported finished, which can
# overtake log lines still on their way (the report and the lines travel separately, and both
# leave within the same second). A trigger that lingers this long after its event is reported
# finished a second later at the earliest, after its lines.
LOG_GRACE_SECONDS = 2.0

_pool: ThreadPoolExecutor | None = None
_publishers: dict[str, tuple[float, Any]] = {}  # conn id -> (created, SharedPublisher)
_lock = threading.Lock()
# The event loop takes this one (``_threads``), never ``_lock``: a pool thread holds ``_lock`` while
# it builds a producer, whose connection lookup waits for the event loop.
_pool_lock = threading.Lock()
# (site, location) -> [its lock, the triggers holding or waiting for it]; event loop only.
_turns: dict[tuple[str, str], list] = {}


class ProbeTrigger(BaseTrigger):
    """Check site ``site`` of the sites file ``sites_file`` once, as the task's current try.

    The try number, whether it is the last one and the run's scheduled time come from the task
    instance the triggerer attaches (start_from_trigger gives it the task's full context).
    """

    def __init__(
        self,
        site: str,
        sites_file: str,
        kafka_config_id: str = KAFKA_CONN_ID,
        location: str = LOCAL_LOCATION,
    ) -> None:
        super().__init__()
        self.site = site
        self.sites_file = sites_file
        self.kafka_config_id = kafka_config_id
        self.location = location

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.{type(self).__name__}", {
            "site": self.site,
            "sites_file": self.sites_file,
            "kafka_config_id": self.kafka_config_id,
            "location": self.location,
        }

    async def run(self):
        context = self.task_instance.get_template_context()
        ti, run = context["ti"], context["dag_run"]
        attempt = contextvars.copy_context().run  # the thread logs into this attempt's log
        cancelled = threading.Event()
        try:
            event = await _in_turn(
                (self.site, self.location),
                attempt,
                check,
                self.site,
                self.sites_file,
                self.kafka_config_id,
                run.logical_date or run.run_after,
                ti.try_number,
                self.location,
                cancelled,
                run.run_id,
                last_try(ti.try_number, getattr(self.task_instance.task, "retries", None), run),
            )
        except asyncio.CancelledError:  # trigger timeout, a cleared task, the triggerer stopping
            cancelled.set()
            raise
        yield event
        try:
            await asyncio.sleep(LOG_GRACE_SECONDS)
        except asyncio.CancelledError:
            # The usual end of the linger: once the event is handled, the triggerer cancels the
            # trigger as if a user had acted and, if the cancellation escapes, logs "Trigger
            # cancelled by user action, invoking on_kill" into the attempt's log. The attempt is
            # over and nothing is left to stop, so the trigger just ends.
            asyncio.current_task().uncancel()


async def _in_turn(key: tuple[str, str], call, *args):
    """``call(*args)`` in a pool thread, once no other probe of ``key`` (site, location) is in
    flight in this triggerer.

    A probe waits for its turn here, in the event loop, holding no thread: a site that hangs holds
    one thread however many of its runs are due, and never two connections to itself. The turn
    ends when the thread is done, not when the trigger is cancelled: a thread cannot be stopped,
    and the site's next probe must not overlap it.
    """
    entry = _turns.setdefault(key, [asyncio.Lock(), 0])
    lock = entry[0]
    entry[1] += 1
    try:
        await lock.acquire()
    except BaseException:
        _leave(key)
        raise
    try:
        done = asyncio.wrap_future(_threads().submit(call, *args))
    except BaseException:
        lock.release()
        _leave(key)
        raise
    done.add_done_callback(lambda _: (lock.release(), _leave(key)))
    return await asyncio.shield(done)


def _leave(key: tuple[str, str]) -> None:
    entry = _turns[key]
    entry[1] -= 1
    if not entry[1]:
        del _turns[key]


def last_try(try_number: int, retries, run) -> bool:
    """Whether try ``try_number`` of a task with ``retries`` is certainly its run's last: try
    ``retries + 1`` of a run never cleared (``clear_number`` 0). Clearing gives a task more tries
    (Airflow raises its ``max_tries``, which the triggerer is not shown), so any try of a cleared
    run is left to the worker, which knows."""
    cleared = getattr(run, "clear_number", None)
    return isinstance(retries, int) and cleared == 0 and try_number == retries + 1


def check(
    site_name,
    sites_file,
    kafka_config_id,
    scheduled_at,
    attempt,
    location=LOCAL_LOCATION,
    cancelled: threading.Event | None = None,
    run_id: str | None = None,
    last: bool = False,
) -> TriggerEvent:
    """One attempt, in a pool thread: the event that ends the task or resumes it on a worker.

    An up attempt is published here, final (it ends the run), and so is a down one when ``last``
    (``last_try``: no retry remains). Any other down attempt is not: the worker that fails it
    publishes it, because only the worker knows for sure whether a retry remains. Its summary
    line is logged here all the same, with ``final`` false as the worker will store it unless the
    run was cleared, so that every attempt's log starts with it.
    cancelled: set once the trigger is cancelled; the attempt then publishes nothing, since
    Airflow has already failed it (``TriggerTimeout``) or taken it elsewhere.
    """
    from airflow.sdk.log import mask_secret

    from sitewatch.attempt import place, record, summarize
    from sitewatch.config.secrets import expand_headers
    from sitewatch.probe.http import probe

    try:
        if cancelled is not None and cancelled.is_set():  # while it waited for a thread
            return TriggerEvent({"error": "cancelled"})
        site, secrets = expand_headers(_site(site_name, sites_file), on_secret=mask_secret)
        observation = probe(site, secrets=secrets, location=location)
        place(observation, site, scheduled_at, attempt, run_id)
        # What will be stored (the worker corrects a down attempt of a cleared run, ``last_try``)
        observation.final = observation.up or last
        if not observation.final:
            summarize(observation)  # here, so that it leads the attempt's log
            return TriggerEvent({"down": observation.to_message().decode()})
        if cancelled is not None and cancelled.is_set():
            log.warning(
                "site=%s attempt=%s not published: its trigger was cancelled", site_name, attempt
            )
            return TriggerEvent({"error": "cancelled"})
        record(observation, _publisher(kafka_config_id).publish)
    except SiteDown as down:  # the last try, published and logged: a worker fails the task
        return TriggerEvent({"down": down.observation.to_message().decode(), "published": True})
    except Exception as exc:  # raised again on the worker, where Airflow's retries apply
        if isinstance(exc, DeliveryError):
            _replace_publisher(kafka_config_id)
        else:
            log.exception("site=%s attempt=%s could not be checked", site_name, attempt)
        return TriggerEvent({"error": type(exc).__name__, "detail": str(exc)})
    return TaskSuccessEvent()


def _site(name: str, sites_file: str):
    from sitewatch.config.loader import cached_sites

    site = cached_sites(sites_file).by_name.get(name)
    if site is not None:
        return site
    raise ConfigError([f"{sites_file}: site {name!r} is no longer in the sites file (or invalid)"])


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            capacity = triggerer_capacity()
            threads = probe_threads(capacity=capacity)
            if threads < capacity:
                log.warning(
                    "%s=%s is below the triggerer's capacity (%s): more than %s sites that do not "
                    "answer can delay every other check in this triggerer",
                    THREADS_VAR,
                    threads,
                    capacity,
                    threads,
                )
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="sitewatch-probe")
        return _pool


def probe_threads(environ=os.environ, *, capacity: int = DEFAULT_CAPACITY) -> int:
    """The most probe threads of one triggerer: ``SITEWATCH_PROBE_THREADS`` (1..1024), by default
    ``capacity``, the triggerer's ``[triggerer] capacity``.

    With one probe per site and location in flight, ``capacity`` threads leave every trigger the
    triggerer holds a thread of its own, so probes that hang cannot starve the others. The pool
    starts a thread only when every other is busy: a large size costs nothing while sites answer.
    A lower setting bounds the threads of a small machine, at the price that as many sites that
    do not answer delay the others' checks by up to their ``timeout``.
    """
    text = environ.get(THREADS_VAR, "").strip()
    if not text:
        return capacity
    if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
        raise SettingError(
            f"{THREADS_VAR}={text!r}: expected a whole number from 1 to {MAX_THREADS} "
            "(default: the triggerer's capacity)"
        )
    return int(text)


def triggerer_capacity() -> int:
    """``[triggerer] capacity``: the most triggers one triggerer runs at once. (A triggerer
    started with ``--capacity`` overrides it unseen here; set ``SITEWATCH_PROBE_THREADS`` then.)"""
    from airflow.sdk.configuration import conf

    return conf.getint("triggerer", "capacity", fallback=DEFAULT_CAPACITY)


def _publisher(conn_id: str):
    from sitewatch.airflow.hooks import observation_producer
    from sitewatch.pipeline.publish import SharedPublisher

    with _lock:
        if conn_id not in _publishers:
            producer = observation_producer(conn_id)
            _publishers[conn_id] = (time.monotonic(), SharedPublisher(producer))
        return _publishers[conn_id][1]


def _replace_publisher(conn_id: str) -> None:
    """After a failed delivery: the next attempt builds a new producer from the connection as it
    is now, unless this one is younger than ``REPLACE_AFTER_SECONDS`` (no churn while Kafka is
    down)."""
    with _lock:
        created, publisher = _publishers.get(conn_id, (None, None))
        if publisher is not None and time.monotonic() - created >= REPLACE_AFTER_SECONDS:
            del _publishers[conn_id]
            publisher.retire()
