"""End to end through ``dag.test()``: a site DAG probes a local server, publishes to real Kafka."""

import json
import logging

import pytest

from tests.builders import one_site_dag, sites_file
from tests.conftest import read_topic


@pytest.fixture
def make_dag(tmp_path, monkeypatch):
    """Write a one-site sites file (as an operator would) and build its DAG."""

    def make(url: str, **settings):
        keys = {k: json.dumps(v) for k, v in settings.items()}
        return one_site_dag(sites_file(["e2e"], url, **keys), tmp_path, monkeypatch)

    return make


@pytest.fixture
def topic(new_topic, monkeypatch):
    name = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    return name


def test_up_site_publishes_one_observation(web, topic, make_dag):
    web.reply = (200, "<p>Last updated 12:34</p>")
    run = make_dag(web.url, regex=r"Last updated \d\d:\d\d", retries=0).test()
    assert run.state == "success"

    (msg,) = read_topic(topic, 1)
    assert msg.key() == b"e2e"
    doc = json.loads(msg.value())
    assert doc["v"] == 1
    expected = {
        "site": "e2e",
        "url": web.url,
        "attempt": 1,
        "final": True,
        "up": True,
        "status_code": 200,
        "regex": r"Last updated \d\d:\d\d",
        "regex_matched": True,
        "error": None,
        "error_detail": None,
        "final_url": web.url,
        "body_bytes": 25,
        "tls_expires_at": None,
        "tls_ms": None,
    }
    assert {k: doc[k] for k in expected} == expected
    assert doc["scheduled_at"] == run.logical_date.isoformat()
    assert 0 < doc["ttfb_ms"] <= doc["response_time_ms"] < 5000
    assert doc["connect_ms"] is not None


def test_down_site_publishes_every_attempt_and_fails_the_run(web, topic, make_dag):
    web.reply = (500, "boom")
    run = make_dag(web.url, retries=1, retry_delay="1s").test()
    assert run.state == "failed"

    docs = [json.loads(m.value()) for m in read_topic(topic, 2)]
    docs.sort(key=lambda d: d["attempt"])
    assert [(d["attempt"], d["final"], d["up"], d["error"]) for d in docs] == [
        (1, False, False, "status"),
        (2, True, False, "status"),
    ]
    assert docs[0]["error_detail"] == "status 500 not in 200-399"


def test_unreachable_broker_fails_with_the_delivery_error(web, monkeypatch, capfd, make_dag):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SITEWATCH_KAFKA",
        json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": "127.0.0.1:9",
                    "message.timeout.ms": 2000,
                    "log_level": 0,
                },
            }
        ),
    )
    run = make_dag(web.url, retries=0).test()
    assert run.state == "failed"
    out, err = capfd.readouterr()
    assert "sitewatch.errors.DeliveryError: Kafka did not confirm delivery to" in out + err


def test_header_secret_comes_from_the_environment_and_stays_out_of_logs(
    web, topic, make_dag, monkeypatch, capfd, caplog
):
    token = "tok-7f3a9c1e5b"
    monkeypatch.setenv("SITEWATCH_SECRET_E2E_TOKEN", token)
    caplog.set_level(logging.INFO)
    run = make_dag(
        web.url, retries=0, headers={"Authorization": "Bearer ${SITEWATCH_SECRET_E2E_TOKEN}"}
    ).test()
    assert run.state == "success"
    assert web.seen_headers[-1]["Authorization"] == f"Bearer {token}"
    out, err = capfd.readouterr()
    logs = out + err + caplog.text  # task logs reach stdout or the logging capture
    assert "site=e2e attempt=1" in logs  # the task's log was captured ...
    assert token not in logs  # ... and the secret is not in it
    (msg,) = read_topic(topic, 1)
    assert token.encode() not in msg.value()


def test_each_location_probes_as_itself_and_publishes_its_own_observation(web, topic, make_dag):
    web.reply_by_agent["(location west)"] = (503, "west is refused")
    dag = make_dag(web.url, retries=0, locations=["east", "west"], quorum=2)
    assert sorted(t.task_id for t in dag.tasks) == ["probe.east", "probe.west"]
    assert {t.task_id: t.queue for t in dag.tasks} == {
        "probe.east": "sitewatch-east",
        "probe.west": "sitewatch-west",
    }
    run = dag.test()
    assert run.state == "failed"  # a location's task fails; the site's verdict is the drain's

    docs = sorted(
        (json.loads(m.value()) for m in read_topic(topic, 2)), key=lambda d: d["location"]
    )
    assert [(d["location"], d["up"], d["status_code"]) for d in docs] == [
        ("east", True, 200),
        ("west", False, 503),
    ]
    agents = sorted(h["User-Agent"] for h in web.seen_headers)
    assert agents[0].endswith("(location east)") and agents[1].endswith("(location west)")
