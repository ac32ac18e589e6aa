"""The triggerer's side of a check, against real local sites and the real Kafka broker.

``ProbeTrigger.run`` is driven here by asyncio with a stand-in for the task instance the triggerer
attaches (its template context: try number, max tries, the run); tests/faults/test_triggerer_path.py
runs the same trigger in a real Airflow triggerer.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.triggers.base import TaskSuccessEvent

from sitewatch.airflow import probe_trigger
from sitewatch.airflow.operators import ProbeOperator, probe_in
from sitewatch.airflow.probe_trigger import ProbeTrigger, probe_threads
from sitewatch.config.loader import site_for_url
from sitewatch.errors import ConfigError, DeliveryError, SettingError, SiteDown, SitewatchError
from sitewatch.observation import Observation
from sitewatch.pipeline.publish import SharedPublisher
from tests.conftest import free_ports, read_topic

pytestmark = pytest.mark.services

SCHEDULED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


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


def ti(try_number: int, retries: int):
    """What the trigger reads from the task instance the triggerer attaches."""
    context = {
        "ti": SimpleNamespace(try_number=try_number, max_tries=retries),
        "dag_run": SimpleNamespace(logical_date=SCHEDULED, run_after=SCHEDULED),
    }
    task = SimpleNamespace(retries=retries, template_ext=(), start_trigger_args=None)
    return SimpleNamespace(task_id="probe", task=task, get_template_context=lambda: context)


def run(trigger: ProbeTrigger, try_number: int = 1, retries: int = 2):
    trigger.task_instance = ti(try_number, retries)

    async def first_event():
        async for event in trigger.run():
            return event

    return asyncio.run(first_event())


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
    event = run(ProbeTrigger("tr-down", path), try_number=3, retries=2)
    assert not isinstance(event, TaskSuccessEvent)
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
        publisher.publish(Observation(site=site, url="http://x/", checked_at=SCHEDULED, up=True))

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
    assert probe_threads({}) == probe_trigger.DEFAULT_THREADS
    assert probe_threads({"SITEWATCH_PROBE_THREADS": "8"}) == 8
    for bad in ("0", "-1", "2.5", "many", "5000"):
        with pytest.raises(SettingError, match="SITEWATCH_PROBE_THREADS"):
            probe_threads({"SITEWATCH_PROBE_THREADS": bad})


def _operator(path: str, name: str, url: str) -> ProbeOperator:
    return ProbeOperator(task_id="probe", site=site_for_url(url, name=name), sites_file=path)
