"""End to end through ``dag.test()``: a site's ``expect`` assertions judge the probe in the
triggerer, and the failed one is what the published observation says."""

import json

import pytest

from tests.builders import one_site_dag, sites_file
from tests.conftest import read_topic

EXPECT = [
    {"status": 200},
    {"json": "$.data.id", "equals": 1},
    {"json": "$.items[*].state", "equals": "ready"},
]


@pytest.fixture
def topic(new_topic, monkeypatch):
    name = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    return name


def _dag(url: str, tmp_path, monkeypatch):
    # JSON is YAML flow style: the list goes into the sites file as an operator could write it.
    keys = {"expect": json.dumps(EXPECT), "retries": "0"}
    return one_site_dag(sites_file(["e2e"], url, **keys), tmp_path, monkeypatch)


def test_assertions_that_hold_keep_the_site_up(web, topic, tmp_path, monkeypatch):
    web.reply = (200, json.dumps({"data": {"id": 1}, "items": [{"state": "ready"}]}))
    run = _dag(web.url, tmp_path, monkeypatch).test()
    assert run.state == "success"
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["up"], doc["error"], doc["error_detail"]) == (True, None, None)


def test_the_first_failed_assertion_makes_the_site_down(web, topic, tmp_path, monkeypatch):
    web.reply = (200, json.dumps({"data": {"id": 2}, "items": [{"state": "late"}]}))
    run = _dag(web.url, tmp_path, monkeypatch).test()
    assert run.state == "failed"
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["up"], doc["error"], doc["error_detail"]) == (
        False,
        "assertion",
        "json $.data.id: expected 1, got 2",
    )
