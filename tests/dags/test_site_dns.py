"""End to end through ``dag.test()``: a DNS check (``dns://``) runs through the triggerer like an
HTTP one, and its observation is what reaches Kafka."""

import json

import pytest

from tests.builders import one_site_dag, sites_file
from tests.conftest import read_topic
from tests.dns_server import dns_server

RECORDS = {("shop.test", "A"): ["192.0.2.10"]}


@pytest.fixture
def topic(new_topic, monkeypatch):
    name = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    return name


def _dag(port: int, answer: str, tmp_path, monkeypatch):
    keys = {"answers": f"[{answer}]", "retries": "0", "timeout": "2s"}
    text = sites_file(["e2e-dns"], f"dns://127.0.0.1:{port}/shop.test?type=A", **keys)
    return one_site_dag(text, tmp_path, monkeypatch)


def test_the_expected_answer_keeps_the_site_up(topic, tmp_path, monkeypatch):
    with dns_server(RECORDS) as port:
        run = _dag(port, "192.0.2.10", tmp_path, monkeypatch).test()
    assert run.state == "success"
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["url"], doc["up"], doc["error"], doc["status_code"]) == (
        f"dns://127.0.0.1:{port}/shop.test?type=A",
        True,
        None,
        None,
    )


def test_a_wrong_answer_fails_the_run_as_answer(topic, tmp_path, monkeypatch):
    with dns_server(RECORDS) as port:
        run = _dag(port, "192.0.2.99", tmp_path, monkeypatch).test()
    assert run.state == "failed"
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["up"], doc["error"]) == (False, "answer")
    assert "missing [192.0.2.99]" in doc["error_detail"]


def test_the_dag_page_shows_the_dns_settings_only(tmp_path, monkeypatch):
    doc = _dag(53, "192.0.2.10", tmp_path, monkeypatch).doc_md
    assert "| answers | `all of 192.0.2.10` |" in doc
    assert "| method |" not in doc and "| expect_status |" not in doc
    assert "| verify_tls |" not in doc
