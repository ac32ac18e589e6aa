"""The triggerer's side of a check, against real local sites and the real Kafka broker.

``ProbeTrigger.run`` is driven here by asyncio with a stand-in for the task instance the triggerer
attaches (its template context: try number, max tries, the run); tests/faults/test_triggerer_path.py
runs the same trigger in a real Airflow triggerer.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferralError
from airflow.triggers.base import TaskSuccessEvent

from sitewatch.airflow import probe_trigger
from sitewatch.airflow.factory import site_dag
from sitewatch.airflow.operators import ProbeOperator, attempt_timeout, probe_in
from sitewatch.airflow.probe_trigger import ProbeTrigger, probe_threads
from sitewatch.config.loader import site_for_url
from sitewatch.errors import (
    ConfigError,
    DeliveryError,
    SettingError,
    SiteDown,
    SitewatchError,
    TriggerTimeout,
)
from sitewatch.observation import Observation
from sitewatch.pipeline.publish import SharedPublisher
from tests.builders import observation
from tests.conftest import free_ports, read_topic

pytestmark = pytest.mark.services

SCHEDULED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RUN_ID = f"scheduled__{SCHEDULED.isoformat()}"


@pytest.fixture
def topic(new_topic, monkeypatch):
    name = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    return name


@pytest.fixture
def sites_file(tmp_path):
    def write(*entries: tuple[str, str], extra: str = "") -> str:
        path = tmp_path / "sites.yaml"
        body = "".join(f"  - name: {n}\n    url: {u}\n{extra}" for n, u in entries)
        path.write_text(f"sites:\n{body}")
        return str(path)

    return write


def ti(try_number: int, retries: int, clears: int = 0):
    """What the trigger reads from the task instance the triggerer attaches (``clears``: how
    often the run was cleared)."""
    run = SimpleNamespace(
        logical_date=SCHEDULED, run_after=SCHEDULED, run_id=RUN_ID, clear_number=clears
    )
    context = {"ti": SimpleNamespace(try_number=try_number, max_tries=retries), "dag_run": run}
    task = SimpleNamespace(retries=retries, template_ext=(), start_trigger_args=None)
    return SimpleNamespace(task_id="probe", task=task, get_template_context=lambda: context)


def run(trigger: ProbeTrigger, try_number: int = 1, retries: int = 2, clears: int = 0):
    return asyncio.run(first_event(trigger, try_number, retries, clears))


async def first_event(trigger: ProbeTrigger, try_number=1, retries=2, clears=0):
    trigger.task_instance = ti(try_number, retries, clears)
    async for event in trigger.run():
        return event


def test_an_up_site_ends_the_task_and_its_observation_is_on_the_topic(web, topic, sites_file):
    path = sites_file(("tr-up", web.url))
    event = run(ProbeTrigger("tr-up", path), try_number=3, retries=2)
    assert isinstance(event, TaskSuccessEvent)
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["site"], doc["attempt"], doc["final"], doc["up"]) == ("tr-up", 3, True, True)
    assert doc["scheduled_at"] == SCHEDULED.isoformat()


def test_a_down_site_is_published_and_failed_on_the_worker(web, topic, sites_file):
    web.reply = (503, "down for maintenance")
    path = sites_file(("tr-down", web.url))
    # try 3 of 3, but the run was cleared: only the worker knows whether a retry remains
    event = run(ProbeTrigger("tr-down", path), try_number=3, retries=2, clears=1)
    assert not isinstance(event, TaskSuccessEvent)
    assert "published" not in event.payload
    sent = Observation.from_message(event.payload["down"].encode())
    assert (sent.site, sent.attempt, sent.up, sent.scheduled_at) == ("tr-down", 3, False, SCHEDULED)

    # the worker knows the task instance's max_tries (5 after a clear), the triggerer does not
    operator = _operator(path, "tr-down", web.url)
    with pytest.raises(SiteDown) as raised:
        operator.resume({"ti": SimpleNamespace(try_number=3, max_tries=5)}, event.payload)
    failed = raised.value.observation
    assert (failed.attempt, failed.final) == (3, False)
    assert failed.error_detail == "status 503 not in 200-399"
    (msg,) = read_topic(topic, 1)  # published once, by the worker
    assert Observation.from_message(msg.value()) == failed


def test_the_last_try_of_a_down_site_is_published_by_the_triggerer(web, topic, sites_file):
    """The run's last try (never cleared) is stored without waiting for a worker, so the drain
    can judge DOWN at once; the worker only fails the task, publishing nothing more."""
    web.reply = (503, "down")
    path = sites_file(("tr-last", web.url))
    event = run(ProbeTrigger("tr-last", path), try_number=3, retries=2)
    assert event.payload["published"] is True
    (msg,) = read_topic(topic, 1)
    stored = Observation.from_message(msg.value())
    assert (stored.attempt, stored.final, stored.up, stored.run_id) == (3, True, False, RUN_ID)
    with pytest.raises(SiteDown) as raised:
        _operator(path, "tr-last", web.url).resume(
            {"ti": SimpleNamespace(try_number=3, max_tries=2)}, event.payload
        )
    assert raised.value.observation == stored

    retry_left = run(ProbeTrigger("tr-last", path), try_number=2, retries=2)
    assert "published" not in retry_left.payload  # try 2 of 3: the worker publishes it
    with pytest.raises(AssertionError, match="got 1"):  # nothing published twice
        read_topic(topic, 2, timeout=3)


def summaries(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sitewatch.attempt"]


def test_every_attempt_logs_its_summary_in_the_triggerer_as_it_is_stored(
    web, topic, sites_file, caplog
):
    """The summary line leads an attempt's log, so the triggerer logs it, also for a down attempt
    the worker publishes; the event's observation and the line say what is stored (``final``),
    and the worker logs the line again only when the run was cleared and ``final`` turns out
    otherwise. An up attempt's line has no ``error=``."""
    caplog.set_level(logging.INFO, logger="sitewatch.attempt")
    path = sites_file(("tr-sum", web.url))
    assert isinstance(run(ProbeTrigger("tr-sum", path), try_number=1), TaskSuccessEvent)
    (up,) = summaries(caplog)
    assert up.startswith("site=tr-sum attempt=1 final=True up=True status=200 response_ms=")
    assert "error=" not in up

    web.reply = (503, "down")
    caplog.clear()
    event = run(ProbeTrigger("tr-sum", path), try_number=1, retries=2)
    (down,) = summaries(caplog)
    assert down.startswith("site=tr-sum attempt=1 final=False up=False status=503")
    assert down.endswith("error=status detail=status 503 not in 200-399")
    assert json.loads(event.payload["down"])["final"] is False
    with pytest.raises(SiteDown):
        _operator(path, "tr-sum", web.url).resume(
            {"ti": SimpleNamespace(try_number=1, max_tries=2)}, event.payload
        )
    assert summaries(caplog) == [down]  # the worker published it as the line says
    (msg,) = read_topic(topic, 2)[1:]
    assert Observation.from_message(msg.value()).final is False

    caplog.clear()  # try 3 of a cleared run: the triggerer cannot know it is the last
    event = run(ProbeTrigger("tr-sum", path), try_number=3, retries=2, clears=1)
    with pytest.raises(SiteDown):
        _operator(path, "tr-sum", web.url).resume(
            {"ti": SimpleNamespace(try_number=3, max_tries=2)}, event.payload
        )
    told, stored = summaries(caplog)
    assert "final=False" in told and stored == told.replace("final=False", "final=True")


def test_a_trigger_cancelled_after_its_event_ends_quietly(web, topic, sites_file):
    """Once the event is handled the triggerer cancels the trigger, which lingers for its log
    lines (``LOG_GRACE_SECONDS``): the trigger ends instead of letting the cancellation escape,
    on which Airflow would log "Trigger cancelled by user action" into the attempt's log."""
    trigger = ProbeTrigger("tr-quiet", sites_file(("tr-quiet", web.url)))
    trigger.task_instance = ti(1, 2)

    async def main():
        events = trigger.run()
        event = await anext(events)
        rest = asyncio.create_task(anext(events, "ended"))
        await asyncio.sleep(0.1)
        rest.cancel("__airflow_user_action__")  # as the triggerer's cancel_triggers does
        return event, await rest

    event, rest = asyncio.run(main())
    assert isinstance(event, TaskSuccessEvent) and rest == "ended"


def test_an_unconfirmed_delivery_resumes_as_delivery_error(web, sites_file, monkeypatch):
    (port,) = free_ports(1)  # nothing listens there
    extra = {"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0, "message.timeout.ms": 1500}
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRIGGER_NOWHERE", json.dumps({"conn_type": "kafka", "extra": extra})
    )
    path = sites_file(("tr-nokafka", web.url))
    event = run(ProbeTrigger("tr-nokafka", path, kafka_config_id="trigger_nowhere"))
    assert event.payload["error"] == "DeliveryError"
    assert "did not confirm delivery" in event.payload["detail"]
    with pytest.raises(DeliveryError, match="did not confirm delivery"):
        _operator(path, "tr-nokafka", web.url).resume({}, event.payload)


def test_a_site_gone_from_the_file_and_an_unset_secret_are_pipeline_errors(
    web, topic, sites_file, monkeypatch
):
    monkeypatch.delenv("SITEWATCH_SECRET_TRIGGER_TOKEN", raising=False)
    path = sites_file(
        ("tr-secret", web.url),
        extra="    headers: {X-Token: '${SITEWATCH_SECRET_TRIGGER_TOKEN}'}\n",
    )
    gone = run(ProbeTrigger("tr-removed", path))
    assert gone.payload["error"] == "ConfigError"
    assert "'tr-removed' is no longer in the sites file" in gone.payload["detail"]
    unset = run(ProbeTrigger("tr-secret", path))
    assert unset.payload["error"] == "ConfigError"
    assert "SITEWATCH_SECRET_TRIGGER_TOKEN is not set" in unset.payload["detail"]
    with pytest.raises(ConfigError, match="SITEWATCH_SECRET_TRIGGER_TOKEN is not set"):
        _operator(path, "tr-secret", web.url).resume({}, unset.payload)
    assert web.seen_headers == []  # neither attempt reached the site


def test_an_unknown_error_from_the_trigger_is_raised_as_a_pipeline_error(sites_file, web):
    operator = _operator(sites_file(("tr-x", web.url)), "tr-x", web.url)
    with pytest.raises(SitewatchError, match="the attempt failed in the triggerer: KeyError"):
        operator.resume({}, {"error": "KeyError", "detail": "'boom'"})


class _Gate(http.server.ThreadingHTTPServer):
    """Answers only once ``n`` requests are waiting at once: proof they are all in flight."""

    daemon_threads = True

    def __init__(self, n: int):
        super().__init__(("127.0.0.1", 0), _GateHandler)
        self.barrier = threading.Barrier(n)
        self.url = f"http://127.0.0.1:{self.server_port}/"


class _GateHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.barrier.wait(30)  # BrokenBarrierError (→ a 500-less reset) if fewer arrive
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_probes_run_side_by_side_off_the_event_loop(topic, sites_file):
    """20 triggers in one event loop: all 20 probes wait at the site at the same moment, and the
    loop keeps running meanwhile (its own ticks go on), so no probe blocks it."""
    n = 20
    gate = _Gate(n)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    path = sites_file(*[(f"tr-par-{i:02d}", gate.url) for i in range(n)])

    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async def one(i):
            trigger = ProbeTrigger(f"tr-par-{i:02d}", path)
            trigger.task_instance = ti(1, 0)
            async for event in trigger.run():
                return event

        ticker = asyncio.create_task(tick())
        events = await asyncio.gather(*(one(i) for i in range(n)))
        ticker.cancel()
        return events, ticks

    try:
        events, ticks = asyncio.run(main())
    finally:
        gate.shutdown()
        gate.server_close()
    assert all(isinstance(e, TaskSuccessEvent) for e in events)
    assert ticks > 1
    assert {json.loads(m.value())["site"] for m in read_topic(topic, n)} == {
        f"tr-par-{i:02d}" for i in range(n)
    }


def test_a_shared_publisher_confirms_each_threads_own_message(topic):
    from sitewatch.airflow.hooks import ObservationProducerHook

    publisher = SharedPublisher(
        ObservationProducerHook(kafka_config_id="sitewatch_kafka").get_producer()
    )
    sites = [f"tr-pub-{i}" for i in range(40)]

    def send(site):
        publisher.publish(observation(site, SCHEDULED))

    threads = [threading.Thread(target=send, args=(s,)) for s in sites]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.retire()
    publisher._reports.join(10)
    assert not publisher._reports.is_alive()
    assert sorted(m.key().decode() for m in read_topic(topic, len(sites))) == sorted(sites)


def test_the_probe_settings_name_what_is_wrong():
    assert probe_in({}) == "triggerer"
    assert probe_in({"SITEWATCH_PROBE_IN": "worker"}) == "worker"
    with pytest.raises(SettingError, match="SITEWATCH_PROBE_IN='workers'"):
        probe_in({"SITEWATCH_PROBE_IN": "workers"})
    assert probe_threads({}) == probe_trigger.DEFAULT_CAPACITY
    assert probe_threads({}, capacity=250) == 250  # a thread for every trigger the triggerer holds
    assert probe_threads({"SITEWATCH_PROBE_THREADS": "8"}, capacity=250) == 8
    for bad in ("0", "-1", "2.5", "many", "5000"):
        with pytest.raises(SettingError, match="SITEWATCH_PROBE_THREADS"):
            probe_threads({"SITEWATCH_PROBE_THREADS": bad})


def _operator(path: str, name: str, url: str) -> ProbeOperator:
    return ProbeOperator(task_id="probe", site=site_for_url(url, name=name), sites_file=path)


class _Holding(http.server.ThreadingHTTPServer):
    """Notes when each request arrives (``arrived``, monotonic), then holds it ``hold`` seconds
    before answering 200, or until ``stop`` when ``hold`` is None (a site that never answers)."""

    daemon_threads = True
    request_queue_size = 128  # the 70 hung probes connect at once

    def __init__(self, hold: float | None):
        super().__init__(("127.0.0.1", 0), _HoldingHandler)
        self.hold = hold
        self.arrived: dict[str, list[float]] = {}  # by path
        self.stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_port}/"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _HoldingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.arrived.setdefault(self.path, []).append(time.monotonic())
        self.server.stopping.wait(self.server.hold)
        if self.server.hold is not None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def fresh_pool(monkeypatch):
    """The trigger pool as a triggerer starts it: created on first use, default size."""
    monkeypatch.delenv("SITEWATCH_PROBE_THREADS", raising=False)
    monkeypatch.setattr(probe_trigger, "_pool", None)
    yield
    if probe_trigger._pool is not None:
        probe_trigger._pool.shutdown(wait=False, cancel_futures=True)


def test_one_probe_per_site_and_location_is_in_flight(sites_file, fresh_pool):
    """Three runs of a site that never answers, due at once, reach it one after the other, each
    after the one before timed out; its other location's probe goes alongside."""
    hung = _Holding(hold=None)
    path = sites_file(("tr-one", hung.url), extra="    timeout: 1s\n")

    async def main():
        local = [first_event(ProbeTrigger("tr-one", path), try_number=i) for i in (1, 2, 3)]
        east = first_event(ProbeTrigger("tr-one", path, location="east"))
        return await asyncio.gather(*local, east)

    try:
        events = asyncio.run(main())
    finally:
        hung.stop()
    assert all(json.loads(e.payload["down"])["error"] == "timeout" for e in events)
    arrived = hung.arrived["/"]
    assert len(arrived) == 4
    gaps = [round(b - a, 1) for a, b in zip(arrived, arrived[1:], strict=False)]
    # east with the first local probe, then local 2 and 3 once the one before timed out (1 s)
    assert gaps[0] < 0.5 and min(gaps[1:]) >= 0.9, gaps
    assert not probe_trigger._turns  # nothing left behind


def test_hung_sites_do_not_delay_a_healthy_check(web, topic, sites_file, fresh_pool):
    """70 sites that never answer (5 s timeout), more than the 64 threads the pool once had: a
    healthy site checked while all of them hang still ends at once (it took 5 s then)."""
    hung = _Holding(hold=None)
    names = [f"tr-hung-{i:02d}" for i in range(70)]
    path = sites_file(
        ("tr-healthy", web.url),
        *[(n, f"{hung.url}{n}") for n in names],
        extra="    timeout: 5s\n",
    )

    async def main():
        hanging = [asyncio.create_task(first_event(ProbeTrigger(n, path))) for n in names]
        in_flight = -1
        while in_flight != (in_flight := sum(map(len, hung.arrived.values()))):
            await asyncio.sleep(0.5)  # until every hung probe that can start has started
        started = time.monotonic()
        event = await first_event(ProbeTrigger("tr-healthy", path))
        took = time.monotonic() - started
        return event, took, in_flight, await asyncio.gather(*hanging)

    try:
        event, took, in_flight, hanging = asyncio.run(main())
    finally:
        hung.stop()
    assert isinstance(event, TaskSuccessEvent)
    assert took < 2.0, f"the healthy check took {took:.1f} s beside {in_flight} hung probes"
    assert in_flight == len(names)
    assert all(json.loads(e.payload["down"])["error"] == "timeout" for e in hanging)


def test_a_probe_cancelled_in_flight_keeps_its_turn_and_publishes_nothing(
    topic, sites_file, fresh_pool
):
    """The trigger timeout (or a cleared task) cancels a trigger whose probe is in flight: the
    thread cannot be stopped, so the site's next probe waits until it ends, and the cancelled
    attempt, which Airflow failed, is not published."""
    slow = _Holding(hold=1.5)
    path = sites_file(("tr-cancel", slow.url))

    async def main():
        first = asyncio.create_task(first_event(ProbeTrigger("tr-cancel", path), try_number=1))
        while not slow.arrived:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(first_event(ProbeTrigger("tr-cancel", path), try_number=2))
        await asyncio.sleep(0.2)
        first.cancel()
        return await second

    try:
        event = asyncio.run(main())
    finally:
        slow.stop()
    assert isinstance(event, TaskSuccessEvent)
    first, second = slow.arrived["/"]
    assert second - first >= 1.4  # after the cancelled probe's answer
    (msg,) = read_topic(topic, 1)  # the cancelled attempt ended first: had it published, here
    assert json.loads(msg.value())["attempt"] == 2


def test_a_trigger_that_times_out_fails_the_attempt_as_trigger_timeout(sites_file, web):
    """The trigger's timeout is the attempt's (the site's timeout plus 2 minutes, as a worker's
    execution_timeout); when Airflow fires it, the worker fails the attempt with TriggerTimeout,
    which Airflow retries, instead of its bare TaskDeferralTimeout."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR

    path = sites_file(("tr-late", web.url), extra="    timeout: 30s\n")
    site = site_for_url(web.url, name="tr-late", timeout="30s")
    operator = ProbeOperator(task_id="probe", site=site, sites_file=path)
    assert operator.start_trigger_args.timeout == attempt_timeout(site) == timedelta(seconds=150)
    task = site_dag(site, path).get_task("probe")
    assert task.execution_timeout == task.start_trigger_args.timeout

    # what the scheduler's check_trigger_timeouts stores, as the worker reads it back
    timed_out = {"error": "Trigger timeout"}
    with pytest.raises(TriggerTimeout, match=r"site tr-late: .* within 0:02:30 .*no triggerer"):
        operator.resume_execution(TRIGGER_FAIL_REPR, timed_out, {})
    with pytest.raises(TaskDeferralError, match="Trigger failure"):
        operator.resume_execution(TRIGGER_FAIL_REPR, {"error": "Trigger failure"}, {})
    with pytest.raises(DeliveryError, match="no ack"):
        operator.resume_execution(
            "resume", {"event": {"error": "DeliveryError", "detail": "no ack"}}, {}
        )


def test_a_pool_below_the_triggerers_capacity_says_what_it_risks(monkeypatch, caplog, fresh_pool):
    monkeypatch.setenv("SITEWATCH_PROBE_THREADS", "16")
    monkeypatch.setenv("AIRFLOW__TRIGGERER__CAPACITY", "100")
    with caplog.at_level(logging.WARNING, logger=probe_trigger.__name__):
        assert probe_trigger._threads()._max_workers == 16
    assert "SITEWATCH_PROBE_THREADS=16 is below the triggerer's capacity (100)" in caplog.text
